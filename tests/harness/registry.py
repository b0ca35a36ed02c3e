"""Run a real ``docker-registry`` (distribution 2.8) process on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
import yaml

from localdev.ops.storage import blob_path

from .binaries import require_binary, stop_process
from .net import LOOPBACK, free_port

#: Environment keys the harness always overrides with its own values.
FORCED_ENV_KEYS = (
    "REGISTRY_HTTP_ADDR",
    "REGISTRY_HTTP_DEBUG_ADDR",
    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
)


def stored_blob(storage: Path, digest: str) -> Path:
    """Where a registry whose storage root is ``storage`` keeps blob ``digest``."""
    return storage / "docker/registry/v2" / blob_path(digest)


class RegistryStartError(RuntimeError):
    """The registry process exited or never answered while starting."""


class RegistryProcess:
    """A ``docker-registry serve`` process listening on 127.0.0.1.

    ``start()`` writes ``workdir/name/config.yml`` (storage in
    ``workdir/name/data``, HTTP on ``127.0.0.1:port``, optional debug server on
    ``127.0.0.1:debug_port`` with Prometheus enabled, text logs at level info)
    and runs ``docker-registry serve config.yml``. Its stdout and stderr go to
    ``workdir/name/registry.log`` (appended to across restarts, each start
    preceded by a ``--- harness: start N ---`` marker line).

    The process environment is ``os.environ`` overlaid with ``env``, exactly
    like the registry image, so ``env`` can be the very environment the product
    gives its registry container (``REGISTRY_PROXY_REMOTEURL`` and so on).
    **Deviation:** such an environment carries container-internal addresses and
    paths, so the harness always forces ``REGISTRY_HTTP_ADDR``,
    ``REGISTRY_HTTP_DEBUG_ADDR`` and ``REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY``
    to its own loopback addresses and storage directory, whatever ``env`` or
    ``os.environ`` say. If ``env`` sets ``REGISTRY_HTTP_DEBUG_ADDR`` and no
    ``debug_port`` is given, a free debug port is chosen so the debug server the
    product asked for still exists (see :attr:`debug_url`).
    """

    def __init__(
        self,
        workdir: Path,
        name: str,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        debug_port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.name = name
        self.env: dict[str, str] = dict(env or {})
        self.port: int = port if port is not None else free_port()
        if debug_port is None and "REGISTRY_HTTP_DEBUG_ADDR" in self.env:
            debug_port = free_port()
        self.debug_port: int | None = debug_port
        self.dir = self.workdir / name
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._starts = 0

    # ------------------------------------------------------------------ paths
    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}"

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the form used in image references."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def debug_url(self) -> str | None:
        """Base URL of the debug server (``/debug/vars``, ``/metrics``) or None."""
        if self.debug_port is None:
            return None
        return f"http://{LOOPBACK}:{self.debug_port}"

    @property
    def storage(self) -> Path:
        """Filesystem storage root directory (``workdir/name/data``)."""
        return self.dir / "data"

    @property
    def config_path(self) -> Path:
        """Path of the generated ``config.yml``."""
        return self.dir / "config.yml"

    @property
    def log_path(self) -> Path:
        """File receiving the process's stdout and stderr."""
        return self.dir / "registry.log"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The running (or last) process object, None before the first start."""
        return self._proc

    @property
    def running(self) -> bool:
        """True while the process exists and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    # ---------------------------------------------------------------- config
    def config(self) -> dict[str, Any]:
        """The configuration written to ``config.yml``."""
        http: dict[str, Any] = {"addr": self.host}
        if self.debug_port is not None:
            http["debug"] = {
                "addr": f"{LOOPBACK}:{self.debug_port}",
                "prometheus": {"enabled": True, "path": "/metrics"},
            }
        return {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}},
            "http": http,
        }

    def process_env(self) -> dict[str, str]:
        """``os.environ`` + ``env``, with the address and storage keys forced."""
        merged = dict(os.environ)
        merged.update(self.env)
        merged["REGISTRY_HTTP_ADDR"] = self.host
        merged["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] = str(self.storage)
        if self.debug_port is not None:
            merged["REGISTRY_HTTP_DEBUG_ADDR"] = f"{LOOPBACK}:{self.debug_port}"
        else:
            merged.pop("REGISTRY_HTTP_DEBUG_ADDR", None)
        return merged

    # -------------------------------------------------------------- lifecycle
    def start(self, wait: bool = True, timeout: float = 15.0) -> Self:
        """Write the config and start the process.

        With ``wait=True`` block until ``GET /v2/`` gives any HTTP answer, at
        most ``timeout`` seconds; raise :class:`RegistryStartError` (with the log
        tail) if the process exits first or never answers. With ``wait=False``
        return at once; use :meth:`wait_exit` or :meth:`wait_ready`.
        """
        if self.running:
            raise RuntimeError(f"registry {self.name} is already running")
        argv = self.command()
        self.storage.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self._close_log()
        self._starts += 1
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"--- harness: start {self._starts} ---\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            argv,
            cwd=self.dir,
            env=self.process_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.stop()
                raise
        return self

    def command(self) -> list[str]:
        """What runs: ``docker-registry serve CONFIG``."""
        return [require_binary("docker-registry"), "serve", str(self.config_path)]

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Block until ``/v2/`` answers; raise RegistryStartError otherwise."""
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False) as client:
            while True:
                if self._proc is None or self._proc.poll() is not None:
                    code = None if self._proc is None else self._proc.returncode
                    raise RegistryStartError(
                        f"registry {self.name} exited with code {code} while starting; log tail:\n{self.log_tail()}"
                    )
                try:
                    client.get(f"{self.url}/v2/", timeout=1.0)
                    return
                except httpx.HTTPError:
                    pass
                if time.monotonic() >= deadline:
                    raise RegistryStartError(
                        f"registry {self.name} gave no answer on {self.url}/v2/ within "
                        f"{timeout:.1f}s; log tail:\n{self.log_tail()}"
                    )
                time.sleep(0.05)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the process to exit.

        Return its exit code (negative for a signal), or None if it is still
        running. Used to observe a registry that dies at start.
        """
        if self._proc is None:
            raise RuntimeError(f"registry {self.name} was never started")
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> int | None:
        """Send ``sig`` (SIGTERM, as ``docker stop`` does), SIGKILL after ``timeout`` s; return the exit code.

        Whatever the process started and left behind in its process group is killed too.
        """
        code = stop_process(self._proc, timeout, sig)
        self._kill_group()
        self._close_log()
        return code

    def kill(self) -> int | None:
        """SIGKILL the process and everything it started (a container killed hard) and reap it."""
        proc = self._proc
        code: int | None = None
        if proc is not None:
            self._kill_group()
            code = proc.wait(timeout=10)
        self._close_log()
        return code

    def _kill_group(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    def restart(self, wait: bool = True, timeout: float = 15.0) -> Self:
        """Stop (if running) and start again on the same port and storage."""
        self.stop()
        return self.start(wait=wait, timeout=timeout)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------- inspection
    def log_text(self) -> str:
        """Everything the process has logged so far (all starts)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def debug_vars(self) -> dict[str, Any]:
        """GET ``/debug/vars`` (expvar JSON) from the debug server."""
        if self.debug_url is None:
            raise RuntimeError(f"registry {self.name} has no debug server")
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            resp = client.get(f"{self.debug_url}/debug/vars")
            resp.raise_for_status()
            data: dict[str, Any] = json.loads(resp.content)
            return data

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RegistryProcess(name={self.name!r}, url={self.url!r}, running={self.running})"
