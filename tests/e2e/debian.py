"""Debian packages the end-to-end test needs from suites newer than the host's, fetched privately.

The host is bookworm. kind 0.33.0, containerd 2.1 and runc 1.3 exist only in sid (trixie has
kind 0.27.0), and docker-registry 2.8.3 in trixie and sid. Installing them with the host's apt
would mix suites and break the host, so they are fetched through a package list of our own
(``Dir::Etc::SourceList`` and friends point into the cache) and unpacked with ``dpkg -x``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .paths import cache_dir

ARCHIVE = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SOURCES = (
    f"deb [signed-by={KEYRING}] {ARCHIVE} sid main\n"
    f"deb [signed-by={KEYRING}] {ARCHIVE} trixie main\n"
    f"deb-src [signed-by={KEYRING}] {ARCHIVE} trixie main\n"
)


@dataclass(frozen=True)
class Package:
    """One binary package at a version we rely on: ``name/suite`` with a required version prefix."""

    name: str
    suite: str
    version_prefix: str


#: kind 0.33.0 is the README's minimum; containerd 2.1.x and runc are what the node runs.
KIND = Package("kind", "sid", "0.33.0")
CONTAINERD = Package("containerd", "sid", "2.1.")
RUNC = Package("runc", "sid", "1.3.")
DOCKER_REGISTRY = Package("docker-registry", "trixie", "2.8.3")
#: kind's node base files (containerd config.toml v2, systemd units, entrypoint) come from its source.
KIND_SOURCE = Package("kind", "trixie", "0.27.0")


class PrivateApt:
    """apt-get against our own package list and state, never the host's."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_dir() / "apt"
        self.debs = self.root / "debs"

    def _options(self) -> list[str]:
        return [
            "-o", f"Dir::Etc::SourceList={self.root / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={self.root / 'lists'}",
            "-o", f"Dir::Cache={self.root / 'cache'}",
            "-o", "Dir::State::Status=/dev/null",
            "-o", "APT::Get::List-Cleanup=false",
        ]  # fmt: skip

    def _apt(self, *args: str, cwd: Path | None = None) -> str:
        result = subprocess.run(["apt-get", "-q", *self._options(), *args], cwd=cwd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"apt-get {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def update(self) -> None:
        for sub in ("lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "sources.list").write_text(SOURCES)
        stamp = self.root / "lists" / ".updated"
        if stamp.exists() and stamp.read_text() == SOURCES:
            return
        self._apt("update")
        stamp.write_text(SOURCES)

    def version(self, package: Package) -> str:
        out = subprocess.run(
            ["apt-cache", *self._options(), "show", f"{package.name}/{package.suite}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        versions = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Version:")]
        if not versions:
            raise RuntimeError(f"{package.name} not found in {package.suite}")
        version = versions[0]
        if not version.startswith(package.version_prefix):
            raise RuntimeError(
                f"{package.name}/{package.suite} is {version}, not {package.version_prefix}*: "
                "update the pin in tests/e2e/debian.py"
            )
        return version

    def download(self, package: Package) -> Path:
        """The .deb of ``package`` (downloaded once, kept in the cache)."""
        self.update()
        version = self.version(package)
        self.debs.mkdir(parents=True, exist_ok=True)
        found = sorted(self.debs.glob(f"{package.name}_{version.replace(':', '%3a')}_*.deb"))
        if not found:
            self._apt("download", f"{package.name}={version}", cwd=self.debs)
            found = sorted(self.debs.glob(f"{package.name}_{version.replace(':', '%3a')}_*.deb"))
        if not found:
            raise RuntimeError(f"apt-get download {package.name}={version} wrote no .deb into {self.debs}")
        return found[0]

    def source_tarball(self, package: Package) -> Path:
        """The upstream ``.orig.tar.gz`` of a source package."""
        self.update()
        upstream = package.version_prefix
        target = self.root / "src"
        found = sorted(target.glob(f"{package.name}_{upstream}*.orig.tar.*"))
        if not found:
            target.mkdir(parents=True, exist_ok=True)
            # The archive keeps the orig tarball but no longer the .dsc and Debian diff of this
            # revision; apt checks each file it does fetch against the signed Sources index,
            # so a failure is acceptable as long as the tarball arrived.
            try:
                self._apt("source", "--download-only", f"{package.name}/{package.suite}", cwd=target)
            except RuntimeError as err:
                error: RuntimeError | None = err
            else:
                error = None
            found = sorted(target.glob(f"{package.name}_{upstream}*.orig.tar.*"))
            if not found and error is not None:
                raise error
        if not found:
            raise RuntimeError(f"no {package.name}_{upstream} orig tarball after apt-get source in {target}")
        return found[0]


def extract(deb: Path, into: Path) -> Path:
    """``dpkg -x`` a package into ``into`` (a directory of our own, never ``/``)."""
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg", "-x", str(deb), str(into)], check=True)
    return into


def kind_binary() -> Path:
    """The real kind 0.33.0 binary, unpacked from sid's package into the cache."""
    apt = PrivateApt()
    deb = apt.download(KIND)
    target = cache_dir() / "kind" / deb.stem
    binary = target / "usr" / "bin" / "kind"
    if not binary.exists():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        extract(deb, tmp)
        os.replace(tmp, target) if not target.exists() else None
    return binary
