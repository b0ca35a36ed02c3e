"""The two images the stack runs, built locally on the private engine (nothing can be pulled here).

- A stand-in for ``registry:3.x``: Debian's docker-registry 2.8.3 as ``/bin/registry`` with the
  layout of the registry:3 image (``/etc/distribution/config.yml``, ``/var/lib/registry``, its
  ``/entrypoint.sh``, busybox for ``sh``, ``wget``, ``timeout``, ``sed``).
- A stand-in for ``kindest/node``: a Debian trixie root, kind's own node base files from Debian's
  source package of kind (containerd ``config.toml`` at ``version = 2``, systemd units, the node
  entrypoint), containerd 2.1 and runc from Debian sid, and the stand-ins of ``standins/``.

Each image carries a label with the hash of everything it is built from; a build is skipped when
the engine already has the image with that hash, so a rerun neither debootstraps nor imports.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from . import debian
from .docker import docker, docker_ok
from .paths import cache_dir

HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
HASH_LABEL = "localdev.e2e.inputs"
#: Bump when the recipe below changes in a way the hashed inputs do not show.
RECIPE = "4"

#: Packages a kind node needs from its base image (kind's images/base/Dockerfile installs these
#: and a few more for storage drivers we do not use).
NODE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "iptables", "iproute2", "procps", "kmod", "libseccomp2",
    "ca-certificates", "conntrack",
)  # fmt: skip
NODE_SUITE = "trixie"

#: registry:3's /entrypoint.sh: a config file argument means `registry serve FILE`.
REGISTRY_ENTRYPOINT = """#!/bin/sh
set -e
case "$1" in
    *.yaml|*.yml) set -- registry serve "$@" ;;
    serve|garbage-collect|help|-*) set -- registry "$@" ;;
esac
exec "$@"
"""

#: registry:3's default config, minus ``storage.tag`` (2.8 refuses the key).
REGISTRY_CONFIG = """version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def _hash(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def image_inputs_hash(image: str) -> str | None:
    """The inputs hash label of a local image, or None when the engine does not have it."""
    result = docker("image", "inspect", "-f", f'{{{{index .Config.Labels "{HASH_LABEL}"}}}}', image, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _import(root: Path, image: str, changes: list[str]) -> None:
    """``tar`` a root into ``docker import``: an image from files, with no registry involved."""
    args = ["docker", "import"]
    for change in changes:
        args += ["-c", change]
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    try:
        subprocess.run([*args, "-", image], stdin=tar.stdout, check=True, capture_output=True, env=os.environ)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0:
            raise RuntimeError(f"tar of {root} failed")


def _copy_with_libs(binary: Path, root: Path, dest: str) -> None:
    target = root / dest.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, target)
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts and parts[0].startswith("/") else None
        if lib and lib.startswith("/"):
            lib_target = root / lib.lstrip("/")
            lib_target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(lib), lib_target)


def ensure_registry_image(tag: str) -> str:
    """The registry:3 stand-in tagged ``tag``; returns its inputs hash."""
    deb = debian.PrivateApt().download(debian.DOCKER_REGISTRY)
    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    inputs = _hash(RECIPE, "registry", deb.name, busybox.read_bytes(), REGISTRY_ENTRYPOINT, REGISTRY_CONFIG)
    if image_inputs_hash(tag) == inputs:
        return inputs
    work = cache_dir() / "build" / f"registry-{inputs}"
    shutil.rmtree(work, ignore_errors=True)
    unpacked = debian.extract(deb, work / "deb")
    root = work / "root"
    _copy_with_libs(unpacked / "usr/bin/docker-registry", root, "/bin/registry")
    _copy_with_libs(busybox, root, "/bin/busybox")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (root / "etc/distribution").mkdir(parents=True)
    (root / "etc/distribution/config.yml").write_text(REGISTRY_CONFIG)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "entrypoint.sh").write_text(REGISTRY_ENTRYPOINT)
    (root / "entrypoint.sh").chmod(0o755)
    for directory in ("var/lib/registry", "tmp", "root"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    _import(
        root,
        tag,
        [
            "ENV PATH=/bin",
            'ENTRYPOINT ["/entrypoint.sh"]',
            'CMD ["/etc/distribution/config.yml"]',
            "VOLUME /var/lib/registry",
            "EXPOSE 5000",
            f"LABEL {HASH_LABEL}={inputs}",
        ],
    )
    shutil.rmtree(work, ignore_errors=True)
    return inputs


def trixie_root() -> Path:
    """``debootstrap --variant=minbase trixie`` with the node's packages, once per package list."""
    key = _hash(NODE_SUITE, *NODE_PACKAGES)
    root = cache_dir() / "roots" / f"{NODE_SUITE}-{key}"
    if (root / ".complete").exists():
        return root
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(NODE_PACKAGES)}", NODE_SUITE, str(tmp), debian.ARCHIVE],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap {NODE_SUITE} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    (tmp / ".complete").write_text(key)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def _kind_base_files(tarball: Path, into: Path) -> None:
    """kind's ``images/base/files/`` from its source tarball, placed as kind's Dockerfile copies them."""
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if len(parts) < 5 or parts[1:4] != ("images", "base", "files") or not member.isfile():
                continue
            rel = Path(*parts[4:])
            if rel.parts[0] == "LICENSES":
                continue
            target = into / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            executable = rel.parts[:3] == ("usr", "local", "bin") or rel.parts[:2] == ("kind", "bin")
            target.chmod(0o755 if executable else 0o644)


_GO_CONST = re.compile(r'^\s*(?:const\s+)?(\w+)\s*=\s*"([^"]*)"', re.M)


def _go_manifest(source: str, name: str) -> str:
    """The value of Go constant ``name``: backquoted parts joined by ``+`` with string constants."""
    constants = dict(_GO_CONST.findall(source))
    rest = source.split(f"const {name} = ", 1)[1]
    parts: list[str] = []
    while True:
        rest = rest.lstrip()
        if rest.startswith("`"):
            end = rest.index("`", 1)
            parts.append(rest[1:end])
            rest = rest[end + 1 :]
        else:
            ident = re.match(r"\w+", rest)
            assert ident, f"cannot read the Go constant {name}"
            parts.append(constants[ident.group(0)])
            rest = rest[ident.end() :]
        rest = rest.lstrip(" \t")
        if not rest.startswith("+"):
            return "".join(parts)
        rest = rest[1:]


def _kind_manifests(tarball: Path, into: Path) -> None:
    """The CNI and storage manifests ``kind build node-image`` writes into /kind/manifests/."""
    wanted = {
        "const_cni.go": ("defaultCNIManifest", "default-cni.yaml"),
        "const_storage.go": ("defaultStorageManifest", "default-storage.yaml"),
    }
    target = into / "kind/manifests"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            path = Path(member.name)
            if path.parent.parts[1:] == ("pkg", "build", "nodeimage") and path.name in wanted:
                source = archive.extractfile(member)
                assert source is not None
                constant, filename = wanted[path.name]
                (target / filename).write_text(_go_manifest(source.read().decode(), constant))
    missing = [f for _, f in wanted.values() if not (target / f).exists()]
    if missing:
        raise RuntimeError(f"{tarball.name} has no {', '.join(missing)} source")


def _chroot(root: Path, *args: str) -> str:
    return subprocess.run(["chroot", str(root), *args], capture_output=True, text=True, check=True).stdout


def ensure_node_image(tag: str) -> str:
    """The kindest/node stand-in tagged ``tag`` (tag only: see docs/testing.md); returns its inputs hash."""
    if "@" in tag:
        raise ValueError(f"a locally built image cannot carry the digest of {tag}: tag the stand-in without it")
    apt = debian.PrivateApt()
    containerd = apt.download(debian.CONTAINERD)
    runc = apt.download(debian.RUNC)
    kind_src = apt.source_tarball(debian.KIND_SOURCE)
    version = tag.rsplit(":", 1)[1] if ":" in tag.rsplit("/", 1)[-1] else "latest"
    standin_bytes = b"".join(p.name.encode() + p.read_bytes() for p in sorted(STANDINS.iterdir()) if p.is_file())
    inputs = _hash(RECIPE, "node", NODE_SUITE, *NODE_PACKAGES, containerd.name, runc.name, kind_src.name, version, standin_bytes)
    if image_inputs_hash(tag) == inputs:
        return inputs
    base = trixie_root()
    work = cache_dir() / "build" / f"node-{inputs}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    root = work / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True)
    (root / ".complete").unlink(missing_ok=True)
    debian.extract(containerd, root)
    debian.extract(runc, root)
    # kind's units and config expect containerd under /usr/local/bin (its image builds it there).
    for name in ("containerd", "containerd-shim-runc-v2", "ctr"):
        link = root / "usr/local/bin" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(f"/usr/bin/{name}")
    _kind_base_files(kind_src, root)
    _kind_manifests(kind_src, root)
    for name, dest in (("kubeadm", "usr/bin/kubeadm"), ("kubectl", "usr/bin/kubectl"), ("cgroup-rw", "usr/local/bin/cgroup-rw")):
        shutil.copy2(STANDINS / f"{name}.sh", root / dest)
        (root / dest).chmod(0o755)
    (root / "kind/version").write_text(f"{version}\n")
    (root / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)
    # As kind's Dockerfile does: the base runtime spec with kind's product-files hook and no rlimits.
    spec = json.loads(_chroot(root, "/usr/bin/ctr", "oci", "spec"))
    spec.setdefault("hooks", {}).setdefault("createContainer", []).append({"path": "/kind/bin/mount-product-files.sh"})
    spec.get("process", {}).pop("rlimits", None)
    (root / "etc/containerd/cri-base.json").write_text(json.dumps(spec, indent=2) + "\n")
    # kind's Dockerfile: trim systemd to what a node needs, and enable containerd. There is no
    # kubelet, so its unit is left disabled rather than restarting forever.
    for pattern in (
        "lib/systemd/system/multi-user.target.wants/*",
        "etc/systemd/system/*.wants/*",
        "lib/systemd/system/local-fs.target.wants/*",
        "lib/systemd/system/sockets.target.wants/*udev*",
        "lib/systemd/system/sockets.target.wants/*initctl*",
        "lib/systemd/system/basic.target.wants/*",
        "lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
    ):
        for path in root.glob(pattern):
            path.unlink()
    with (root / "etc/systemd/journald.conf").open("a") as journald:
        journald.write("ReadKMsg=no\n")
    _chroot(root, "systemctl", "enable", "containerd.service", "undo-mount-hacks.service")
    _chroot(root, "systemctl", "mask", "systemd-binfmt.service")
    (root / "kind/standin.log").write_text("")
    base_tag = f"localdev-e2e/node-root:{inputs}"
    _import(root, base_tag, ["ENV container=docker", f"LABEL {HASH_LABEL}={inputs}"])
    # docker import cannot set STOPSIGNAL; a build FROM the local image can, without a pull.
    dockerfile = (
        f"FROM {base_tag}\nSTOPSIGNAL SIGRTMIN+3\n"
        'ENTRYPOINT ["/usr/local/bin/cgroup-rw", "/usr/local/bin/entrypoint", "/sbin/init"]\n'
    )
    (work / "ctx").mkdir()
    (work / "ctx/Dockerfile").write_text(dockerfile)
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(work / "ctx")],
        env={**os.environ, "DOCKER_BUILDKIT": "0"}, check=True, capture_output=True,
    )  # fmt: skip
    docker("image", "rm", base_tag, check=False)
    shutil.rmtree(work, ignore_errors=True)
    if not docker_ok():
        raise RuntimeError("the engine stopped answering during the node image build")
    return inputs
