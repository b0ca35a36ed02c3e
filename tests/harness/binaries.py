"""Locating the real binaries the harness drives, with actionable errors, and stopping them."""

from __future__ import annotations

import shutil
import signal
import subprocess

#: Executable name -> Debian package that provides it.
DEBIAN_PACKAGES: dict[str, str] = {
    "docker-registry": "docker-registry",
    "containerd": "containerd",
    "ctr": "containerd",
    "skopeo": "skopeo",
}


class MissingBinaryError(RuntimeError):
    """A binary the harness needs is not installed."""


def require_binary(name: str) -> str:
    """Return the absolute path of executable ``name`` or raise MissingBinaryError.

    The error message names the Debian package to install, so a test run on a
    machine without it fails with a clear instruction instead of being skipped.
    """
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGES.get(name, name)
        raise MissingBinaryError(
            f"executable {name!r} not found on PATH; install the Debian package: apt-get install -y {package}"
        )
    return path


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> int | None:
    """Send ``sig`` to ``proc``, SIGKILL it after ``timeout`` s; return its exit code (None if never started)."""
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)
