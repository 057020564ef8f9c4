# syntax=docker/dockerfile:1
# gosight's image: the `gosight` sidecar and the `injector` webhook, built with the
# same cargo command CI uses (scripts/test.sh), on the toolchain the workspace
# pins (rust-version 1.95). The uprobes crate compiles its BPF C with clang at
# build time, hence clang and the libbpf/kernel headers in the build stage, and
# generates the Rust side of its records with bindgen, hence libclang.
#
#   docker build -t registry.example.com/gosight:0.1.0 .
#   docker push registry.example.com/gosight:0.1.0

FROM rust:1.95-bookworm AS build
# Build-stage tools only (not shipped); Debian point releases move their versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libclang-dev libbpf-dev linux-libc-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gosight -p injector \
    && install -D -m 0755 target/release/gosight /out/gosight \
    && install -D -m 0755 target/release/injector /out/injector

# The runtime stage: the two binaries on Debian's glibc. scripts/build-images.sh
# writes the same image without a container engine (this stage's COPY, USER and
# ENTRYPOINT read from here; the libraries from the build machine's Debian 12).
FROM debian:bookworm-slim
COPY --from=build /out/gosight /out/injector /usr/local/bin/
# Non-root by default (the injector runs as is); the injected sidecar sets
# runAsUser: 0 itself, with only the capabilities its features need.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gosight"]
