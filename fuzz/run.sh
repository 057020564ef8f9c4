#!/usr/bin/env bash
# fuzz/run.sh [SECONDS_PER_TARGET]  (default 60)
#
# Builds every fuzz target (cargo fuzz, stable Rust, no sanitizer: see
# fuzz/src/lib.rs), then for each one: runs the regression inputs of
# fuzz/regressions/<target>/ and the seeds too big to mutate once, and fuzzes from
# the seed corpus (fuzz/seed.sh) for SECONDS_PER_TARGET. Prints one line per target,
#
#   fuzz <target>: N execs (R/s), 0 crashes
#
# and exits non-zero if any input crashed one (panic, overflow, timeout, out of
# memory), naming the reproducer. Installs cargo-fuzz if it is missing.
#
# Environment: GOSIGHT_FUZZ_JOBS targets at a time (default: the number of CPUs);
# GOSIGHT_FUZZ_TARGET_DIR the cargo target dir (default fuzz/target; point it at a
# cache to keep builds across fresh clones); GOSIGHT_CACHE_DIR as for seed.sh.
set -euo pipefail
shopt -s nullglob
secs=${1:-60}
[[ $secs =~ ^[0-9]+$ ]] || { echo "usage: fuzz/run.sh [SECONDS_PER_TARGET]" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[[ -d $HOME/.cargo/bin ]] && export PATH=$HOME/.cargo/bin:$PATH
[[ -x /usr/local/go/bin/go ]] && export PATH=/usr/local/go/bin:$PATH

# Stable Rust only: no nightly toolchain, no RUSTC_BOOTSTRAP.
unset RUSTC_BOOTSTRAP
if rustc -V | grep -qE -- '-(nightly|dev)'; then
    echo "fuzz/run.sh: $(rustc -V) is not a stable toolchain; the fuzz targets build on stable" >&2
    exit 1
fi
cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
    echo "fuzz/run.sh: installing cargo-fuzz $cargo_fuzz_version" >&2
    cargo install --locked --quiet cargo-fuzz --version "$cargo_fuzz_version"
fi

start=$SECONDS
seeds=$(bash fuzz/seed.sh | tail -1)
target_dir=${GOSIGHT_FUZZ_TARGET_DIR:-$root/fuzz/target}
triple=$(rustc -vV | sed -n 's/^host: //p')
cargo fuzz build --sanitizer none --target-dir "$target_dir" >&2
bin_dir=$target_dir/$triple/release
echo "fuzz: seeds and build took $((SECONDS - start)) s" >&2

# Longest input libFuzzer makes or keeps, per target (the seeds fit).
declare -A max_len=([elf]=65536 [pclntab]=32768 [dwarf]=32768 [buildinfo]=4096 [offsets_db]=32768)
# Inputs run once, unmutated (whole executables, whole tables).
declare -A once=([elf]="$seeds/full" [pclntab]="$seeds/pclntab-full" [dwarf]="$seeds/full")

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
mapfile -t targets < <(cargo fuzz list)

run_target() {
    local t=$1 log=$logs/$1.log status=0
    local corpus=fuzz/corpus/$t artifacts=fuzz/artifacts/$t/
    mkdir -p "$corpus" "$artifacts"
    local -a fixed=()
    for dir in "fuzz/regressions/$t" ${once[$t]:-}; do
        [[ -d $dir ]] && fixed+=("$dir"/*)
    done
    if ((${#fixed[@]})); then
        "$bin_dir/$t" -artifact_prefix="$artifacts" -timeout=60 -rss_limit_mb=4096 \
            "${fixed[@]}" >"$log.once" 2>&1 || status=$?
        if ((status)); then
            cat "$log.once" >"$log"
            echo "$status" >"$log.status"
            return
        fi
    fi
    "$bin_dir/$t" -artifact_prefix="$artifacts" -max_total_time="$secs" -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=2048 -max_len="${max_len[$t]:-65536}" \
        -dict="fuzz/dicts/$t.dict" "$corpus" "$seeds/$t" >"$log" 2>&1 || status=$?
    echo "$status" >"$log.status"
}

jobs=${GOSIGHT_FUZZ_JOBS:-$(nproc)}
for t in "${targets[@]}"; do
    while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
    run_target "$t" &
done
wait

failed=0
for t in "${targets[@]}"; do
    log=$logs/$t.log
    status=$(cat "$log.status" 2>/dev/null || echo 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if ((status == 0)); then
        echo "fuzz $t: ${execs:-0} execs (${rate:-0}/s), 0 crashes"
        continue
    fi
    failed=1
    reproducer=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "fuzz $t: ${execs:-?} execs, 1 crash (exit $status): reproducer ${reproducer:-not written}"
    grep -vE '^(#[0-9]+|INFO:|stat::)' "$log" | tail -40 | sed "s/^/  $t| /"
    [[ -n $reproducer ]] && echo "  reproduce: $bin_dir/$t $reproducer"
done
echo "fuzz: ${#targets[@]} targets, ${secs} s each, $((SECONDS - start)) s in all" >&2
exit "$failed"
