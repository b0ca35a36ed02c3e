"""Run a real containerd 1.6 on private sockets, and pull images through it.

Two pull paths are offered:

* :meth:`Containerd.pull` runs ``ctr images pull --hosts-dir DIR``. The
  registry traffic is made by the ``ctr`` process itself (client-side
  resolver); it reads ``DIR/<host>/hosts.toml`` with the same code CRI uses
  (``remotes/docker/config``), so it checks the hosts.toml files, not the
  daemon's ``config_path``.
* :meth:`Containerd.cri_pull` calls CRI ``ImageService/PullImage`` over gRPC,
  exactly as kubelet does in a kind node: the containerd daemon resolves the
  image using ``[plugins."io.containerd.grpc.v1.cri".registry] config_path``
  from the product's config patch.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from .binaries import require_binary, stop_process

CRI_PLUGIN = "io.containerd.grpc.v1.cri"
CRI_LOAD_FAILURE = f"failed to load plugin {CRI_PLUGIN}"

#: Plugins that need host features absent here (and only log noise/errors).
DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)

K8S_NAMESPACE = "k8s.io"
_MAX_UNIX_SOCKET_PATH = 100  # sun_path is 108 bytes; keep a margin


class ContainerdStartError(RuntimeError):
    """containerd exited or never answered while starting."""


class CriError(RuntimeError):
    """A CRI gRPC call failed; ``code`` and ``details`` come from gRPC."""

    def __init__(self, message: str, code: str, details: str) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


def _toml_str(value: str | Path) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def write_hosts_toml(
    hosts_dir: Path,
    registry: str,
    server: str,
    mirrors: Sequence[str],
    capabilities: Sequence[str] = ("pull", "resolve"),
) -> Path:
    """Write ``hosts_dir/<registry>/hosts.toml`` in containerd's format.

    ``server`` is the fallback upstream (``https://registry-1.docker.io`` for
    ``docker.io``); each entry of ``mirrors`` becomes a ``[host."URL"]`` table
    with ``capabilities``. Return the file's path.
    """
    caps = ", ".join(_toml_str(c) for c in capabilities)
    lines = [f"server = {_toml_str(server)}", ""]
    for mirror in mirrors:
        lines += [f"[host.{_toml_str(mirror)}]", f"  capabilities = [{caps}]", ""]
    path = Path(hosts_dir) / registry / "hosts.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


class Containerd:
    """A containerd daemon with its root, state and sockets under ``workdir``.

    The generated config (``workdir/config.toml``) is a complete version-2
    config: ``root``/``state`` under ``workdir``, gRPC and ttrpc sockets, the
    ``opt`` plugin kept out of ``/opt``, host-dependent snapshotters disabled
    (``DISABLED_PLUGINS``; the CRI plugin is *not* disabled), and - unless
    ``cri_snapshotter`` is None - ``[plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"`` so CRI pulls can unpack without overlayfs mounts.
    ``config_patch`` (the product's text) is appended verbatim after a marker
    comment. Because it comes after table headers, a patch must not contain
    top-level keys, nor re-define a table the base already defines (pass
    ``cri_snapshotter=None`` if it defines ``...cri".containerd``).

    Sockets normally live in ``workdir``; if that path is too long for a unix
    socket they go to a short temporary directory removed by :meth:`stop`.
    """

    def __init__(
        self,
        workdir: Path,
        config_patch: str = "",
        cri_snapshotter: str | None = "native",
    ) -> None:
        self.workdir = Path(workdir)
        self.config_patch = config_patch
        self.cri_snapshotter = cri_snapshotter
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._sock_tmp: str | None = None
        sock = self.workdir / "containerd.sock"
        if len(str(sock)) + len(".ttrpc") > _MAX_UNIX_SOCKET_PATH:
            self._sock_tmp = tempfile.mkdtemp(prefix="ctd-")
            sock = Path(self._sock_tmp) / "containerd.sock"
        self.socket = sock

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        """The generated ``config.toml``."""
        return self.workdir / "config.toml"

    @property
    def log_path(self) -> Path:
        """containerd's stdout+stderr (``workdir/containerd.log``)."""
        return self.workdir / "containerd.log"

    @property
    def root(self) -> Path:
        """containerd ``root`` directory."""
        return self.workdir / "root"

    @property
    def state(self) -> Path:
        """containerd ``state`` directory."""
        return self.workdir / "state"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The daemon process (None before start)."""
        return self._proc

    def config_text(self) -> str:
        """The full config written by :meth:`start`."""
        disabled = ", ".join(_toml_str(p) for p in DISABLED_PLUGINS)
        parts = [
            "version = 2",
            f"root = {_toml_str(self.root)}",
            f"state = {_toml_str(self.state)}",
            f"disabled_plugins = [{disabled}]",
            "",
            "[grpc]",
            f"  address = {_toml_str(self.socket)}",
            "",
            "[ttrpc]",
            f"  address = {_toml_str(str(self.socket) + '.ttrpc')}",
            "",
            "[debug]",
            '  level = "info"',
            "",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_toml_str(self.workdir / 'opt')}",
            "",
        ]
        if self.cri_snapshotter is not None:
            parts += [
                f'[plugins."{CRI_PLUGIN}".containerd]',
                f"  snapshotter = {_toml_str(self.cri_snapshotter)}",
                "",
            ]
        parts += ["# ---- product config patch (verbatim) ----", self.config_patch, ""]
        return "\n".join(parts)

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 30.0) -> Self:
        """Write the config, start containerd, wait until ``ctr version`` works.

        Raise :class:`ContainerdStartError` (with the log tail) if the daemon
        exits or does not answer within ``timeout`` seconds.
        """
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("containerd is already running")
        if os.geteuid() != 0:
            raise ContainerdStartError("containerd needs root (run the tests as root)")
        binary = require_binary("containerd")
        require_binary("ctr")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [binary, "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise ContainerdStartError(f"containerd exited with code {code} while starting; log tail:\n{self.log_tail()}")
            if self.socket.exists():
                remaining = max(0.5, min(5.0, deadline - time.monotonic()))
                try:
                    res = self.ctr("version", timeout=remaining, namespace=None)
                    if res.returncode == 0:
                        return
                    last = res.stderr
                except subprocess.TimeoutExpired:
                    last = "ctr version timed out"
            if time.monotonic() >= deadline:
                raise ContainerdStartError(
                    f"containerd not ready on {self.socket} within {timeout:.1f}s "
                    f"(last: {last.strip()}); log tail:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM containerd, SIGKILL after ``timeout`` s; return exit code."""
        code = stop_process(self._proc, timeout)
        self._close_log()
        if self._sock_tmp is not None:
            shutil.rmtree(self._sock_tmp, ignore_errors=True)
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        if self._proc is None or self._proc.poll() is not None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------- ctr
    def ctr(self, *args: str, timeout: float = 60.0, namespace: str | None = K8S_NAMESPACE) -> subprocess.CompletedProcess[str]:
        """Run ``ctr -a SOCK [-n NAMESPACE] ARGS...``; never raises on failure.

        Only ``subprocess.TimeoutExpired`` escapes, after ``timeout`` seconds.
        """
        cmd = [require_binary("ctr"), "-a", str(self.socket)]
        if namespace is not None:
            cmd += ["-n", namespace]
        cmd += list(args)
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def plugin_status(self, plugin_type: str, plugin_id: str) -> str | None:
        """STATUS column (ok/error/skip) of ``ctr plugins ls`` for a plugin."""
        res = self.ctr("plugins", "ls", namespace=None, timeout=15)
        if res.returncode != 0:
            raise RuntimeError(f"ctr plugins ls failed: {res.stderr.strip()}")
        for line in res.stdout.splitlines():
            cols = line.split()
            if len(cols) >= 4 and cols[0] == plugin_type and cols[1] == plugin_id:
                return cols[-1]
        return None

    def cri_loaded(self) -> bool:
        """True if ``ctr plugins ls`` lists the CRI plugin with status ``ok``."""
        return self.plugin_status("io.containerd.grpc.v1", "cri") == "ok"

    def cri_error(self) -> str | None:
        """Why the CRI plugin failed to load, or None if it loaded.

        Taken from ``ctr plugins ls -d`` (the plugin's Error/Message), falling
        back to the log line ``failed to load plugin io.containerd.grpc.v1.cri``.
        """
        if self.cri_loaded():
            return None
        res = self.ctr("plugins", "ls", "-d", namespace=None, timeout=15)
        block = re.search(
            r"Type:\s+io\.containerd\.grpc\.v1\s+ID:\s+cri\b(.*?)(?=\n\s*Type:|\Z)",
            res.stdout,
            re.S,
        )
        if block:
            msg = re.search(r"Message:\s+(.+)", block.group(1))
            if msg:
                return msg.group(1).strip()
        for line in self.log_text().splitlines():
            if CRI_LOAD_FAILURE in line:
                err = re.search(r'error="((?:[^"\\]|\\.)*)"', line)
                return err.group(1) if err else line
        return "CRI plugin not loaded (no error message found)"

    def pull(
        self,
        ref: str,
        hosts_dir: Path,
        timeout: float = 120.0,
        extra_args: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """``ctr -n k8s.io images pull --snapshotter native --hosts-dir DIR REF``.

        No ``--plain-http`` is passed: with ``--hosts-dir``, a ``[host."http://..."]``
        entry in hosts.toml is enough for a plain-HTTP mirror (checked with
        ctr 1.6.20), as it is for CRI. Returns the completed process (never
        raises on a failed pull; ``subprocess.TimeoutExpired`` after ``timeout``).
        """
        return self.ctr(
            "images",
            "pull",
            "--snapshotter",
            "native",
            "--hosts-dir",
            str(hosts_dir),
            *extra_args,
            ref,
            timeout=timeout,
        )

    def image_refs(self, namespace: str = K8S_NAMESPACE) -> dict[str, str]:
        """Image references in ``namespace`` mapped to their target digests."""
        res = self.ctr("images", "ls", namespace=namespace, timeout=15)
        refs: dict[str, str] = {}
        for line in res.stdout.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 3:
                refs[cols[0]] = cols[2]
        return refs

    def content_digests(self) -> list[str]:
        """Digests in the content store (``ctr content ls``, namespace k8s.io)."""
        res = self.ctr("content", "ls", "-q", timeout=15)
        return [line.strip() for line in res.stdout.splitlines() if line.strip()]

    def remove_image(self, ref: str) -> None:
        """Remove ``ref`` and every alias with the same target, synchronously.

        The CRI plugin adds a ``sha256:<config digest>`` alias to images pulled
        into ``k8s.io``; it is removed too, so content can be collected.
        """
        refs = self.image_refs()
        target = refs.get(ref)
        names = [name for name, digest in refs.items() if name == ref or digest == target]
        if names:
            res = self.ctr("images", "rm", "--sync", *names, timeout=30)
            if res.returncode != 0:
                raise RuntimeError(f"ctr images rm {names} failed: {res.stderr.strip()}")

    def reset_images(self, timeout: float = 15.0) -> None:
        """Remove every image, lease and blob so the next pull starts cold.

        Retries (bounded by ``timeout``) because CRI may add an image alias
        asynchronously right after a pull. Raise RuntimeError if content remains.
        """
        deadline = time.monotonic() + timeout
        while True:
            refs = list(self.image_refs())
            if refs:
                self.ctr("images", "rm", "--sync", *refs, timeout=30)
            leases = self.ctr("leases", "ls", "-q", timeout=15).stdout.split()
            for lease in leases:
                self.ctr("leases", "rm", "--sync", lease, timeout=30)
            left = self.content_digests()
            if left:
                self.ctr("content", "rm", *left, timeout=30)
            if not self.image_refs() and not self.content_digests():
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"images/content still present after {timeout}s: {self.image_refs()} {self.content_digests()}")
            time.sleep(0.2)

    # ------------------------------------------------------------------- CRI
    def cri_pull(self, ref: str, timeout: float = 120.0) -> str:
        """Pull ``ref`` with CRI ``runtime.v1.ImageService/PullImage`` (as kubelet).

        The daemon resolves the image with the CRI registry config (the
        product's ``config_path`` and its hosts.toml files). Return the image
        reference CRI answers (the image id); raise :class:`CriError` on failure.
        """
        return cri_pull(self.socket, ref, timeout)

    def cri_remove_image(self, ref: str, timeout: float = 30.0) -> None:
        """CRI ``RemoveImage`` for ``ref``."""
        cri_remove_image(self.socket, ref, timeout)

    # --------------------------------------------------------------- logging
    def log_text(self) -> str:
        """Everything containerd has logged so far."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])


# --------------------------------------------------- minimal protobuf coding
def cri_call(socket: str | Path, method: str, request: bytes, timeout: float) -> bytes:
    """One CRI gRPC call on containerd's socket, with hand-encoded protobuf (no cri-tools needed)."""
    try:
        import grpc  # type: ignore[import-untyped]  # shipped with the pulumi SDK
    except ImportError as exc:  # pragma: no cover - environment problem
        raise RuntimeError("cri_pull needs the grpcio package (pip install grpcio)") from exc
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(
            method,
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        try:
            reply: Any = call(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = str(exc.code()) if hasattr(exc, "code") else "?"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise CriError(f"CRI {method} failed: {code}: {details}", code, details) from exc
    return bytes(reply)


def cri_pull(socket: str | Path, ref: str, timeout: float = 120.0) -> str:
    """CRI ``runtime.v1.ImageService/PullImage`` of ``ref`` (as kubelet pulls); returns the image id."""
    request = _pb_bytes(1, _pb_bytes(1, ref.encode()))  # PullImageRequest{image{image}}
    return _pb_first_string(cri_call(socket, "/runtime.v1.ImageService/PullImage", request, timeout), 1)


def cri_remove_image(socket: str | Path, ref: str, timeout: float = 30.0) -> None:
    """CRI ``RemoveImage`` of ``ref``."""
    cri_call(socket, "/runtime.v1.ImageService/RemoveImage", _pb_bytes(1, _pb_bytes(1, ref.encode())), timeout)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _pb_bytes(field: int, payload: bytes) -> bytes:
    """Encode a length-delimited protobuf field."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _pb_first_string(data: bytes, field: int) -> str:
    """Return the first length-delimited ``field`` of a message as text ("" if absent)."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            chunk = data[pos : pos + length]
            pos += length
            if number == field:
                return chunk.decode()
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            break
    return ""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
