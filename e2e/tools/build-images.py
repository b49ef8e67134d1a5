#!/usr/bin/env python3
"""Builds the testbed's container images offline, as Docker archives `ctr images import` takes.

usage: build-images.py [--cache DIR] [--kvrocks-bin PATH] [--operator-bin PATH] [--print-json]

Each image is faithful to its upstream image's user, paths and entrypoint, on one Debian
bookworm rootfs made by mmdebstrap (variant essential, plus redis-server, redis-tools and
libssl3; cached):

- apache/kvrocks:2.10.1   $KVROCKS_BIN at /bin/kvrocks, user kvrocks (999:999), the data volume
                          /var/lib/kvrocks holding a default kvrocks.conf, the upstream
                          entrypoint. Not built without a kvrocks binary (never a stand-in).
- redis:7.2               Debian's redis-server and redis-sentinel (7.0 on bookworm), user
                          redis 999:999, WORKDIR /data, an entrypoint that drops root to redis
                          for `redis-server`, as upstream's does.
- kvrocks/kvrocks-exporter:latest
                          a STAND-IN: kvrocks_exporter's module is not on the Go module proxy,
                          so Debian's redis_exporter runs under it with the sidecar's
                          KVROCKS_* settings translated (Redis-level families only, metric
                          prefix kvrocks); it says so on stderr. User nobody.
- kvrocks-operator:<tag>  this repository's operator binary at /kvrocks-operator, user 65532.
- kvrocks-testbed/pause   the pod sandbox (pause.c, static).
- coredns/coredns:<v>     the cluster DNS: the CoreDNS binary built from its Go module (static),
                          alone at /coredns as upstream's image has it, user 65532.

Every image lands in CACHE/images/<file>.tar, rebuilt only when an input changed. The last line
printed (with --print-json, the only output on stdout) maps each image name to its archive.
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

SUITE = "bookworm"
PACKAGES = [
    "redis-server",
    "redis-sentinel",
    "redis-tools",
    "libssl3",
    "ca-certificates",
    "prometheus-redis-exporter",
]
# Bumped when the way images are made changes, so cached archives are rebuilt.
RECIPE = "1"
KVROCKS_IMAGE = "apache/kvrocks:2.10.1"
REDIS_IMAGE = "redis:7.2"
PAUSE_IMAGE = "kvrocks-testbed/pause:1"
EXPORTER_IMAGE = "kvrocks/kvrocks-exporter:latest"
NOBODY_UID = 65534
KVROCKS_UID = 999
REDIS_UID = 999
OPERATOR_UID = 65532

# What the upstream kvrocks image's default config sets that matters here; the operator always
# brings its own kvrocks.conf.
KVROCKS_DEFAULT_CONF = """# Default kvrocks.conf of the testbed's apache/kvrocks image.
bind 0.0.0.0
port 6666
dir /var/lib/kvrocks
"""

REDIS_ENTRYPOINT = """#!/bin/sh
# As the upstream redis image's entrypoint: options or a .conf first means redis-server; as root,
# redis-server runs as the redis user after the working directory is handed over to it.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
    find . \\! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
exec "$@"
"""


def log(message):
    print(f"build-images: {message}", file=sys.stderr, flush=True)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def base_rootfs(cache):
    """The shared bookworm rootfs as a tar (cached by suite and package list)."""
    key = hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)}".encode()).hexdigest()[:16]
    path = os.path.join(cache, f"rootfs-{SUITE}-{key}.tar")
    if os.path.exists(path):
        return path
    if shutil.which("mmdebstrap") is None:
        sys.exit("build-images: mmdebstrap is not installed (apt-get install mmdebstrap)")
    log(f"making the {SUITE} rootfs with mmdebstrap ({', '.join(PACKAGES)}) ...")
    started = time.monotonic()
    partial = path + ".partial"
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=essential",
            "--mode=root",
            "--format=tar",
            f"--include={','.join(PACKAGES)}",
            # No apt lists, caches or docs in the image.
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            SUITE,
            partial,
        ],
        check=True,
        stdout=sys.stderr,
    )
    os.replace(partial, path)
    log(f"rootfs {os.path.getsize(path) >> 20} MiB in {time.monotonic() - started:.0f} s")
    return path


def read_member(rootfs, name):
    with tarfile.open(rootfs) as tar:
        for candidate in (f"./{name}", name):
            try:
                member = tar.getmember(candidate)
            except KeyError:
                continue
            return tar.extractfile(member).read().decode()
    raise SystemExit(f"build-images: {name} is not in {rootfs}")


def with_account(passwd, group, user, uid, home, shell="/usr/sbin/nologin"):
    """passwd and group texts with `user` (and its own group) at `uid`, replacing any entry of
    that name or id."""
    keep_passwd = [
        line
        for line in passwd.splitlines()
        if line and line.split(":")[0] != user and line.split(":")[2] != str(uid)
    ]
    keep_group = [
        line
        for line in group.splitlines()
        if line and line.split(":")[0] != user and line.split(":")[2] != str(uid)
    ]
    keep_passwd.append(f"{user}:x:{uid}:{uid}::{home}:{shell}")
    keep_group.append(f"{user}:x:{uid}:")
    return "\n".join(keep_passwd) + "\n", "\n".join(keep_group) + "\n"


class Layer:
    """An uncompressed layer tar built in memory."""

    def __init__(self):
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.PAX_FORMAT)

    def directory(self, name, uid=0, mode=0o755):
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        info.uid = info.gid = uid
        info.mtime = 0
        self.tar.addfile(info)

    def file(self, name, data, uid=0, mode=0o644):
        if isinstance(data, str):
            data = data.encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.uid = info.gid = uid
        info.mtime = 0
        self.tar.addfile(info, io.BytesIO(data))

    def host_file(self, name, path, mode=0o755):
        with open(path, "rb") as f:
            self.file(name, f.read(), mode=mode)

    def bytes(self):
        self.tar.close()
        return self.buffer.getvalue()


def write_archive(out, name, base, top, config):
    """A Docker archive (manifest.json, config, layer tars) of `name`: `base` (a tar file on
    disk, or None) under the in-memory layer `top`."""
    layers = []
    diff_ids = []
    partial = out + ".partial"
    with tarfile.open(partial, "w") as archive:
        if base is not None:
            digest = sha256_file(base)
            archive.add(base, arcname=f"{digest}/layer.tar")
            layers.append(f"{digest}/layer.tar")
            diff_ids.append(f"sha256:{digest}")
        data = top.bytes()
        digest = hashlib.sha256(data).hexdigest()
        info = tarfile.TarInfo(f"{digest}/layer.tar")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        layers.append(f"{digest}/layer.tar")
        diff_ids.append(f"sha256:{digest}")
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "kvrocks-operator e2e/tools/build-images.py"}],
        }
        config_bytes = json.dumps(image_config, sort_keys=True).encode()
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        info = tarfile.TarInfo(config_name)
        info.size = len(config_bytes)
        archive.addfile(info, io.BytesIO(config_bytes))
        manifest = json.dumps([{"Config": config_name, "RepoTags": [name], "Layers": layers}])
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest.encode()))
    os.replace(partial, out)


PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def kvrocks_image(rootfs, kvrocks_bin):
    passwd, group = with_account(
        read_member(rootfs, "etc/passwd"),
        read_member(rootfs, "etc/group"),
        "kvrocks",
        KVROCKS_UID,
        "/home/kvrocks",
    )
    top = Layer()
    top.file("etc/passwd", passwd)
    top.file("etc/group", group)
    top.directory("bin")
    top.host_file("bin/kvrocks", kvrocks_bin)
    top.directory("var/lib/kvrocks", uid=KVROCKS_UID)
    top.file("var/lib/kvrocks/kvrocks.conf", KVROCKS_DEFAULT_CONF, uid=KVROCKS_UID)
    top.directory("var/run/kvrocks", uid=KVROCKS_UID)
    config = {
        "User": "kvrocks",
        "Env": [PATH_ENV],
        "Entrypoint": [
            "kvrocks",
            "-c",
            "/var/lib/kvrocks/kvrocks.conf",
            "--dir",
            "/var/lib/kvrocks",
            "--pidfile",
            "/var/run/kvrocks/kvrocks.pid",
            "--bind",
            "0.0.0.0",
        ],
        "ExposedPorts": {"6666/tcp": {}},
        "Volumes": {"/var/lib/kvrocks": {}},
        "WorkingDir": "/var/lib/kvrocks",
    }
    return top, config


def redis_image(rootfs):
    passwd, group = with_account(
        read_member(rootfs, "etc/passwd"),
        read_member(rootfs, "etc/group"),
        "redis",
        REDIS_UID,
        "/var/lib/redis",
    )
    top = Layer()
    top.file("etc/passwd", passwd)
    top.file("etc/group", group)
    top.directory("data", uid=REDIS_UID)
    top.directory("usr/local/bin")
    top.file("usr/local/bin/docker-entrypoint.sh", REDIS_ENTRYPOINT, mode=0o755)
    config = {
        "Env": [PATH_ENV],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["redis-server"],
        "ExposedPorts": {"6379/tcp": {}},
        "Volumes": {"/data": {}},
        "WorkingDir": "/data",
    }
    return top, config


EXPORTER_ENTRYPOINT = """#!/bin/sh
# kvrocks_exporter's settings for Debian's redis_exporter (this image is a stand-in).
set -e
addr="${KVROCKS_ADDR:-localhost:6666}"
case "$addr" in
    *://*) addr="redis://${addr#*://}" ;;
    *) addr="redis://$addr" ;;
esac
echo "kvrocks-exporter: redis_exporter STAND-IN for kvrocks_exporter: Redis-level metrics only, no RocksDB families" >&2
if [ -n "${KVROCKS_PASSWORD:-}" ]; then
    export REDIS_PASSWORD="$KVROCKS_PASSWORD"
fi
exec prometheus-redis-exporter -redis.addr "$addr" \
    -web.listen-address "${KVROCKS_EXPORTER_WEB_LISTEN_ADDRESS:-:9121}" \
    -namespace "${KVROCKS_EXPORTER_NAMESPACE:-kvrocks}" "$@"
"""


def exporter_image():
    top = Layer()
    top.directory("usr/local/bin")
    top.file("usr/local/bin/kvrocks_exporter", EXPORTER_ENTRYPOINT, mode=0o755)
    config = {
        "User": f"{NOBODY_UID}:{NOBODY_UID}",
        "Env": [PATH_ENV],
        "Entrypoint": ["/usr/local/bin/kvrocks_exporter"],
        "ExposedPorts": {"9121/tcp": {}},
    }
    return top, config


def coredns_image(coredns_bin):
    top = Layer()
    top.host_file("coredns", coredns_bin)
    config = {
        "User": "65532:65532",
        "Entrypoint": ["/coredns"],
        "ExposedPorts": {"53/tcp": {}, "53/udp": {}},
    }
    return top, config


def operator_image(operator_bin, cache):
    stripped = os.path.join(cache, "kvrocks-operator.stripped")
    subprocess.run(["strip", "--strip-debug", "-o", stripped, operator_bin], check=True)
    top = Layer()
    top.host_file("kvrocks-operator", stripped)
    config = {
        "User": f"{OPERATOR_UID}:{OPERATOR_UID}",
        "Env": [PATH_ENV],
        "Entrypoint": ["/kvrocks-operator"],
    }
    return top, config


def pause_image(cache):
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pause.c")
    binary = os.path.join(cache, "pause")
    subprocess.run(["cc", "-static", "-Os", "-o", binary, source], check=True)
    top = Layer()
    top.host_file("pause", binary)
    return top, {"User": "65535:65535", "Entrypoint": ["/pause"]}


def fingerprint(*parts):
    digest = hashlib.sha256(RECIPE.encode())
    for part in parts:
        if part and os.path.isfile(part):
            digest.update(sha256_file(part).encode())
        else:
            digest.update(str(part).encode())
    return digest.hexdigest()[:16]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cache",
        default=os.path.join(
            os.environ.get("KVROCKS_TESTBED_CACHE")
            or os.path.join(os.path.expanduser("~"), ".cache", "kvrocks-operator-testbed"),
            "images",
        ),
    )
    parser.add_argument("--kvrocks-bin", default=os.environ.get("KVROCKS_BIN") or None)
    parser.add_argument("--operator-bin")
    parser.add_argument("--operator-image", default="kvrocks-operator:dev")
    parser.add_argument("--coredns-bin")
    parser.add_argument("--coredns-image", default="coredns/coredns:dev")
    parser.add_argument("--print-json", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    rootfs = base_rootfs(args.cache)
    pause_source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pause.c")
    this_script = os.path.abspath(__file__)
    wanted = [
        (PAUSE_IMAGE, None, lambda: pause_image(args.cache), (pause_source,)),
        (REDIS_IMAGE, rootfs, lambda: redis_image(rootfs), (rootfs,)),
        (EXPORTER_IMAGE, rootfs, exporter_image, (rootfs,)),
    ]
    if args.kvrocks_bin:
        wanted.append(
            (
                KVROCKS_IMAGE,
                rootfs,
                lambda: kvrocks_image(rootfs, args.kvrocks_bin),
                (rootfs, args.kvrocks_bin),
            )
        )
    else:
        log(f"no kvrocks binary (KVROCKS_BIN unset): {KVROCKS_IMAGE} is NOT built")
    if args.operator_bin:
        wanted.append(
            (
                args.operator_image,
                rootfs,
                lambda: operator_image(args.operator_bin, args.cache),
                (rootfs, args.operator_bin),
            )
        )
    if args.coredns_bin:
        wanted.append(
            (
                args.coredns_image,
                None,
                lambda: coredns_image(args.coredns_bin),
                (args.coredns_bin,),
            )
        )
    built = {}
    for name, base, make, inputs in wanted:
        stem = name.replace("/", "_").replace(":", "_")
        out = os.path.join(args.cache, f"{stem}-{fingerprint(this_script, *inputs)}.tar")
        if not os.path.exists(out):
            started = time.monotonic()
            top, config = make()
            write_archive(out, name, base, top, config)
            log(f"{name}: built in {time.monotonic() - started:.1f} s")
        built[name] = out
    keep = set(built.values()) | {rootfs}
    for entry in os.listdir(args.cache):
        path = os.path.join(args.cache, entry)
        if entry.endswith(".tar") and path not in keep:
            os.remove(path)
    print(json.dumps(built, sort_keys=True))


if __name__ == "__main__":
    main()
