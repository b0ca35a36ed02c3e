"""pytest fixtures for the real-binary harness.

Load with ``pytest_plugins = ["tests.harness.pytest_plugin"]`` in the root
``conftest.py``. Every process a fixture starts is stopped at teardown, even
when the test fails. A missing binary fails the test (never skips it) with the
Debian package to install.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from .binaries import MissingBinaryError, require_binary
from .containerd import Containerd
from .net import free_port
from .registry import RegistryProcess
from .relay import HttpRelay, Mode

RegistryFactory = Callable[..., RegistryProcess]
RelayFactory = Callable[..., HttpRelay]
ContainerdFactory = Callable[..., Containerd]


def require_binaries(*names: str) -> None:
    """Fail the current test (not skip) if any binary is missing."""
    for name in names:
        try:
            require_binary(name)
        except MissingBinaryError as exc:
            pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def make_registry(tmp_path: Path) -> Iterator[RegistryFactory]:
    """Factory for :class:`RegistryProcess` under ``tmp_path/registries``.

    ``make_registry(name, env=None, port=None, debug_port=None, start=True,
    wait=True)``; with ``start=False`` the process is created but not started.
    Reusing a name reuses its storage (stop the first process before starting
    the second). All processes are stopped at teardown.
    """
    require_binaries("docker-registry")
    created: list[RegistryProcess] = []

    def factory(
        name: str,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        debug_port: int | None = None,
        start: bool = True,
        wait: bool = True,
    ) -> RegistryProcess:
        registry = RegistryProcess(tmp_path / "registries", name, env=env, port=port, debug_port=debug_port)
        created.append(registry)
        if start:
            registry.start(wait=wait)
        return registry

    try:
        yield factory
    finally:
        for registry in reversed(created):
            with contextlib.suppress(Exception):
                registry.stop()


@pytest.fixture
def upstream_registry(make_registry: RegistryFactory) -> RegistryProcess:
    """A started plain (push-enabled) registry named ``upstream``, with a debug port."""
    return make_registry("upstream", debug_port=free_port())


@pytest.fixture
def relay_factory() -> Iterator[RelayFactory]:
    """Factory for started :class:`HttpRelay` objects, stopped at teardown.

    ``relay_factory(upstream, bandwidth_bps=None, latency_s=0.0, mode="pass",
    cut_after=0, cut_match="")`` where ``upstream`` is ``"127.0.0.1:PORT"``,
    ``"http://127.0.0.1:PORT"``, a port, or anything with a ``host`` attribute
    (a :class:`RegistryProcess`).
    """
    created: list[HttpRelay] = []

    def factory(
        upstream: str | int | RegistryProcess,
        bandwidth_bps: float | None = None,
        latency_s: float = 0.0,
        mode: Mode = "pass",
        cut_after: int = 0,
        cut_match: str = "",
    ) -> HttpRelay:
        target = upstream.host if isinstance(upstream, RegistryProcess) else upstream
        relay = HttpRelay(
            target,
            bandwidth_bps=bandwidth_bps,
            latency_s=latency_s,
            mode=mode,
            cut_after=cut_after,
            cut_match=cut_match,
        )
        created.append(relay)
        return relay.start()

    try:
        yield factory
    finally:
        for relay in reversed(created):
            with contextlib.suppress(Exception):
                relay.stop()


@pytest.fixture
def containerd_factory(tmp_path: Path) -> Iterator[ContainerdFactory]:
    """Factory for started :class:`Containerd` daemons, stopped at teardown.

    ``containerd_factory(config_patch="", name="containerd",
    cri_snapshotter="native")`` runs containerd in ``tmp_path/name``. Fails
    (does not skip) when not root or when containerd/ctr are missing.
    """
    require_binaries("containerd", "ctr")
    if os.geteuid() != 0:
        pytest.fail("containerd tests must run as root", pytrace=False)
    created: list[Containerd] = []

    def factory(
        config_patch: str = "",
        name: str = "containerd",
        cri_snapshotter: str | None = "native",
    ) -> Containerd:
        daemon = Containerd(tmp_path / name, config_patch, cri_snapshotter=cri_snapshotter)
        created.append(daemon)
        return daemon.start()

    try:
        yield factory
    finally:
        for daemon in reversed(created):
            with contextlib.suppress(Exception):
                daemon.stop()


@pytest.fixture
def skopeo_binary() -> str:
    """Path of ``skopeo``; fails the test naming the Debian package if missing."""
    require_binaries("skopeo")
    return require_binary("skopeo")
