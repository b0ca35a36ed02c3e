"""Loopback networking helpers: free ports, and the bounded waits every test uses."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free at the time of the call.

    The port is found by binding ``127.0.0.1:0`` and reading the port the kernel
    chose. There is an unavoidable race between this call and the caller's bind;
    on a test machine it is negligible.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(url: str, timeout: float = 15.0, interval: float = 0.05) -> None:
    """Poll ``url`` until it gives any HTTP answer (any status code).

    Connection errors and read timeouts are retried until ``timeout`` seconds
    have passed, then :class:`TimeoutError` is raised naming the url and the
    timeout. Environment proxies are ignored (``trust_env=False``).
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    with httpx.Client(trust_env=False) as client:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no HTTP answer from {url} within {timeout:.1f}s (last error: {last_error!r})")
            try:
                client.get(url, timeout=max(0.05, min(2.0, remaining)))
                return
            except httpx.HTTPError as exc:  # connection refused, reset, timeout...
                last_error = exc
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is true; after ``timeout`` seconds fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.1f}s")
        time.sleep(interval)
