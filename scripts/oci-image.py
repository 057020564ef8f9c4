#!/usr/bin/env python3
"""Writes a one-layer OCI image archive (oci-layout, index.json, blobs/) without a
container engine, for `ctr images import` (scripts/kube-node.sh load).

    oci-image.py --name docker.io/library/gosight:0.1.0 --out gosight.tar \
        --file target/release/gosight:/usr/local/bin/gosight --with-libs \
        --entrypoint /usr/local/bin/gosight --user 65532:65532

--file SRC:DEST copies a host file into the image (mode kept; symlinks followed).
--link TARGET:DEST adds a symlink. --with-libs adds every shared library the
dynamically linked --file binaries load (from `ldd`, at the same paths, plus the
ELF interpreter), so a binary built on this Debian release runs as it does here.
--dockerfile DF reads the final stage of DF instead of --file/--entrypoint/--user:
each `COPY --from=<stage> /out/X ... DIR/` becomes a --file of <artifacts>/X into
DIR (--artifacts, default target/release), and USER, ENTRYPOINT, CMD, ENV and
WORKDIR are taken as written. The layer is deterministic: mtime 0, uid/gid 0.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile


def die(msg):
    print(f"oci-image: error: {msg}", file=sys.stderr)
    sys.exit(1)


def shared_libs(path):
    """Paths of the shared libraries `path` loads (empty for a static binary)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"\x7fELF":
        return []
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    if out.returncode != 0 or "not a dynamic executable" in out.stdout + out.stderr:
        return []
    libs = []
    for line in out.stdout.splitlines():
        line = line.strip()
        m = re.match(r"\S+ => (/\S+) \(", line) or re.match(r"(/\S+) \(", line)
        if m:
            libs.append(m.group(1))
        elif "=> not found" in line:
            die(f"{path}: {line}")
    return libs


def parse_dockerfile(path, artifacts):
    """The final stage's files and settings, as the image writer's arguments."""
    stages, current = [], None
    with open(path) as f:
        text = f.read().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            current = {"unsupported": None, "files": [], "entrypoint": None, "cmd": None, "user": None, "env": [], "workdir": None}
            stages.append(current)
        elif current is None:
            continue
        elif word == "COPY":
            args = shlex.split(rest)
            flags = [a for a in args if a.startswith("--")]
            paths = [a for a in args if not a.startswith("--")]
            if not any(f.startswith("--from=") for f in flags):
                current["unsupported"] = line
                continue
            *srcs, dest = paths
            for src in srcs:
                name = os.path.basename(src)
                target = os.path.join(dest, name) if dest.endswith("/") else dest
                current["files"].append((os.path.join(artifacts, name), target))
        elif word in ("ENTRYPOINT", "CMD"):
            value = json.loads(rest) if rest.lstrip().startswith("[") else ["/bin/sh", "-c", rest]
            current[word.lower()] = value
        elif word == "USER":
            current["user"] = rest.strip()
        elif word == "ENV":
            k, _, v = rest.partition("=")
            current["env"].append(f"{k.strip()}={v.strip()}")
        elif word == "WORKDIR":
            current["workdir"] = rest.strip()
    if not stages:
        die(f"{path}: no FROM")
    if stages[-1]["unsupported"]:
        die(f"{path}: the final stage copies from the build context, which is not supported: {stages[-1]['unsupported']}")
    return stages[-1]


def add_dir(tar, seen, path):
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        d = "/".join(parts[:i])
        if d and d not in seen:
            seen.add(d)
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)


def layer(files, links):
    raw = io.BytesIO()
    seen = set()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("tmp", "etc", "proc", "sys", "dev", "run"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            seen.add(d)
            tar.addfile(info)
        # The users the images run as (root, and the Dockerfile's 65532 "nonroot").
        for name, text in (
            ("etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
            ("etc/group", "root:x:0:\nnonroot:x:65532:\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for src, dest in sorted(set(files), key=lambda p: p[1]):
            name = dest.lstrip("/")
            if name in seen:
                continue
            add_dir(tar, seen, dest)
            seen.add(name)
            st = os.stat(src)
            info = tarfile.TarInfo(name)
            info.size = st.st_size
            info.mode = st.st_mode & 0o7777
            with open(src, "rb") as f:
                tar.addfile(info, f)
        for target, dest in links:
            add_dir(tar, seen, dest)
            info = tarfile.TarInfo(dest.lstrip("/"))
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    diff = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(diff)
    return diff, gz.getvalue()


def blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    info.mode = 0o644
    out.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}", len(data)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="full image reference, e.g. docker.io/library/app:1")
    p.add_argument("--out", required=True)
    p.add_argument("--file", action="append", default=[], help="SRC:DEST")
    p.add_argument("--link", action="append", default=[], help="TARGET:DEST")
    p.add_argument("--with-libs", action="store_true")
    p.add_argument("--dockerfile")
    p.add_argument("--artifacts", default="target/release")
    p.add_argument("--entrypoint", help="JSON list or one path")
    p.add_argument("--cmd", help="JSON list")
    p.add_argument("--user")
    p.add_argument("--env", action="append", default=[])
    a = p.parse_args()

    files = []
    for spec in a.file:
        src, _, dest = spec.partition(":")
        files.append((src, dest))
    entrypoint = json.loads(a.entrypoint) if a.entrypoint and a.entrypoint.startswith("[") else (
        [a.entrypoint] if a.entrypoint else None)
    cmd = json.loads(a.cmd) if a.cmd else None
    user, env, workdir = a.user, list(a.env), None
    if a.dockerfile:
        stage = parse_dockerfile(a.dockerfile, a.artifacts)
        files += stage["files"]
        entrypoint = stage["entrypoint"] or entrypoint
        cmd = stage["cmd"] or cmd
        user = stage["user"] or user
        env += stage["env"]
        workdir = stage["workdir"]
    for src, _ in files:
        if not os.path.isfile(src):
            die(f"{src} does not exist (build it first)")
    if a.with_libs:
        for src, _ in list(files):
            for lib in shared_libs(src):
                files.append((os.path.realpath(lib), lib))
    links = [tuple(spec.split(":", 1)) for spec in a.link]

    diff, gz = layer(files, links)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"] + env,
            **({"Entrypoint": entrypoint} if entrypoint else {}),
            **({"Cmd": cmd} if cmd else {}),
            **({"User": user} if user else {}),
            **({"WorkingDir": workdir} if workdir else {}),
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(diff).hexdigest()]},
        "history": [{"created_by": "scripts/oci-image.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])}],
    }
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w") as out:
        cfg_digest, cfg_size = blob(out, json.dumps(config, sort_keys=True).encode())
        layer_digest, layer_size = blob(out, gz)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                        "size": layer_size}],
        }
        m_digest, m_size = blob(out, json.dumps(manifest, sort_keys=True).encode())
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": m_digest,
                "size": m_size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": a.name,
                    "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1],
                },
            }],
        }
        for name, data in (("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
                           ("index.json", json.dumps(index).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            out.addfile(info, io.BytesIO(data))
    os.replace(tmp, a.out)
    print(f"oci-image: {a.name}: {len(files)} files, layer {layer_size} bytes -> {a.out}", file=sys.stderr)
    print(a.out)


if __name__ == "__main__":
    main()
