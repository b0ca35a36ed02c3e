"""A TCP-level HTTP relay that records requests, models a link and injects faults.

:class:`HttpRelay` listens on ``127.0.0.1:<port>`` and forwards every connection
to an upstream on loopback. It reads the client-to-upstream byte stream just
enough to find HTTP/1.1 request heads (method and path), so tests can count the
requests a registry proxy sends upstream and the bytes that came back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self, cast, get_args

from .net import LOOPBACK, free_port

Mode = Literal["pass", "refuse", "blackhole", "cut_after_bytes"]
MODES: tuple[str, ...] = get_args(Mode)

BUFFER_SIZE = 256 * 1024
MAX_HEAD_SIZE = 64 * 1024


@dataclass
class RelayedRequest:
    """One request seen on the client-to-upstream stream."""

    method: str
    path: str
    connection: int
    bytes_down: int = 0  # response bytes relayed back for it (headers included)
    cut: bool = False  # True if the relay dropped its response (cut_after_bytes)


class _RequestParser:
    """Finds request heads in an HTTP/1.x client byte stream.

    Bodies framed by ``Content-Length`` or ``Transfer-Encoding: chunked`` are
    skipped. If the stream stops looking like HTTP, parsing gives up and the
    bytes are still relayed (``opaque``).
    """

    def __init__(self) -> None:
        self.buf = b""
        self.state = "head"  # head | body | chunk_size | chunk_data | trailer | opaque
        self.remaining = 0

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        heads: list[tuple[str, str]] = []
        if self.state == "opaque":
            return heads
        self.buf += data
        while self.buf:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD_SIZE:
                        self._give_up()
                    break
                head, self.buf = self.buf[:end], self.buf[end + 4 :]
                lines = head.split(b"\r\n")
                while lines and not lines[0]:  # tolerate stray CRLF between requests
                    lines.pop(0)
                parts = lines[0].split(b" ") if lines else []
                if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
                    self._give_up()
                    break
                heads.append((parts[0].decode("latin-1"), parts[1].decode("latin-1")))
                length = 0
                chunked = False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    key = name.strip().lower()
                    if key == b"content-length":
                        length = int(value.strip() or b"0")
                    elif key == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                if chunked:
                    self.state = "chunk_size"
                elif length > 0:
                    self.state, self.remaining = "body", length
            elif self.state in ("body", "chunk_data"):
                take = min(self.remaining, len(self.buf))
                self.buf = self.buf[take:]
                self.remaining -= take
                if self.remaining == 0:
                    self.state = "head" if self.state == "body" else "chunk_size"
            elif self.state == "chunk_size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    break
                line, self.buf = self.buf[:end], self.buf[end + 2 :]
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self._give_up()
                    break
                if size == 0:
                    self.state = "trailer"
                else:
                    self.state, self.remaining = "chunk_data", size + 2  # data + CRLF
            elif self.state == "trailer":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    break
                line, self.buf = self.buf[:end], self.buf[end + 2 :]
                if not line:
                    self.state = "head"
        return heads

    def _give_up(self) -> None:
        self.state = "opaque"
        self.buf = b""


class _Connection:
    """One relayed client connection (two threads: up and down)."""

    def __init__(self, relay: HttpRelay, conn_id: int, client: socket.socket) -> None:
        self.relay = relay
        self.id = conn_id
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = False
        self.current: RelayedRequest | None = None
        self.response_started = False
        self.cut_remaining: int | None = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run_up, name=f"relay-{relay.port}-up-{conn_id}", daemon=True)
        self.down_thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread.start()

    def abort(self) -> None:
        """Shut both sockets down; wakes any thread blocked on them."""
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    # client -> upstream
    def _run_up(self) -> None:
        relay = self.relay
        try:
            if not relay._stall_while_blackhole(self):
                return
            try:
                up = socket.create_connection(relay.upstream_addr, timeout=relay.connect_timeout)
            except OSError:
                return
            up.settimeout(None)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.upstream = up
            if self.closed:
                return
            self.down_thread = threading.Thread(
                target=self._run_down,
                name=f"relay-{relay.port}-down-{self.id}",
                daemon=True,
            )
            self.down_thread.start()
            parser = _RequestParser()
            half_closed = False
            while not self.closed:
                if not relay._stall_while_blackhole(self):
                    return
                try:
                    data = self.client.recv(BUFFER_SIZE)
                except OSError:
                    break
                if not data:
                    with contextlib.suppress(OSError):
                        up.shutdown(socket.SHUT_WR)  # propagate the client's half-close
                    half_closed = True
                    break
                for method, path in parser.feed(data):
                    relay._on_request(self, method, path)
                    if not relay._stall_while_blackhole(self):
                        return
                try:
                    up.sendall(data)
                except OSError:
                    break
            if half_closed:
                # let the last response finish; stop() aborts this wait if needed
                self.down_thread.join()
        finally:
            self.abort()
            if self.down_thread is not None and self.down_thread is not threading.current_thread():
                self.down_thread.join(timeout=5.0)
            for sock in (self.client, self.upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
            relay._forget(self)

    # upstream -> client
    def _run_down(self) -> None:
        relay = self.relay
        up = self.upstream
        assert up is not None
        try:
            while not self.closed:
                try:
                    data = up.recv(relay._chunk_size())
                except OSError:
                    break
                if not data:
                    break
                with self.lock:
                    record = self.current
                    first = not self.response_started
                    self.response_started = True
                    cut_remaining = self.cut_remaining
                if first and relay.latency_s > 0:
                    time.sleep(relay.latency_s)
                fire = False
                if cut_remaining is not None and len(data) >= cut_remaining:
                    fire = relay._claim_cut()
                    if fire:
                        data = data[:cut_remaining]
                    else:  # another connection fired the one-shot cut first
                        with self.lock:
                            self.cut_remaining = cut_remaining = None
                if cut_remaining is not None and not fire:
                    # update before sending: once the client has the bytes it
                    # may send its next request, which re-arms this field
                    with self.lock:
                        self.cut_remaining = cut_remaining - len(data)
                if fire and record is not None:
                    record.cut = True
                if data:
                    if not relay._stall_while_blackhole(self):
                        break
                    relay._pace(len(data))
                    relay._account(record, len(data))
                    try:
                        self.client.sendall(data)
                    except OSError:
                        break
                if fire:
                    break
        finally:
            self.abort()


class HttpRelay:
    """Relay ``127.0.0.1:<port>`` to ``upstream``, recording HTTP request lines.

    ``upstream`` is ``"127.0.0.1:PORT"``, ``"http://127.0.0.1:PORT"`` or a port.

    Link model: ``bandwidth_bps`` (bytes per second, shared by all connections,
    None = unlimited) paces the upstream-to-client bytes; ``latency_s`` is slept
    once at the start of each response.

    Fault modes (set :attr:`mode` at any time):

    * ``"pass"``: relay normally.
    * ``"refuse"``: the listening socket is closed (the port stays reserved by
      a bound, non-listening socket, so connects get ECONNREFUSED) and every
      open connection is torn down, like an upstream that went away.
    * ``"blackhole"``: new connections are accepted but never read nor
      answered; open connections stall in both directions. Switching back to
      another mode lets stalled connections resume, like a network that heals.
    * ``"cut_after_bytes"``: the next blob GET (``GET .../blobs/sha256:...``
      whose path contains :attr:`cut_match`, default any) gets only
      :attr:`cut_after` response bytes (status line and headers included) and
      then its connection is dropped. One-shot: a response shorter than
      ``cut_after`` is relayed whole and the next blob GET is the candidate;
      when a cut fires the mode returns to ``"pass"`` and :attr:`cuts` grows
      by one; the cut's record has ``cut=True``. Concurrent candidates (2.8
      fetches a missed blob twice at once) are all armed; only the first to
      reach ``cut_after`` bytes is cut.

    All threads are daemons; :meth:`stop` is bounded in time.
    """

    def __init__(
        self,
        upstream: str | int,
        *,
        port: int | None = None,
        bandwidth_bps: float | None = None,
        latency_s: float = 0.0,
        mode: Mode = "pass",
        cut_after: int = 0,
        cut_match: str = "",
        connect_timeout: float = 5.0,
    ) -> None:
        self.upstream_addr = _parse_upstream(upstream)
        self.port: int = port if port is not None else free_port()
        self.bandwidth_bps = bandwidth_bps
        self.latency_s = latency_s
        self.cut_after = cut_after
        self.cut_match = cut_match
        self.connect_timeout = connect_timeout
        self.cuts = 0
        self._mode: Mode = _check_mode(mode)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._records: list[RelayedRequest] = []
        self._bytes_down = 0
        self._connections: set[_Connection] = set()
        self._next_conn_id = 0
        self._listener: socket.socket | None = None
        self._reserve: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._pace_lock = threading.Lock()
        self._link_free_at = 0.0
        self._started = False
        self._stopping = False

    # ------------------------------------------------------------- addresses
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}"

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{LOOPBACK}:{self.port}"

    # ------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Bind the port and (unless the mode is ``refuse``) start accepting."""
        if self._started:
            return self
        self._started = True
        self._stopping = False
        sock = _bound_socket(self.port)
        if self._mode == "refuse":
            self._reserve = sock
        else:
            self._listen(sock)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, tear every connection down, join threads (bounded)."""
        if not self._started:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._close_listener()
        if self._reserve is not None:
            self._reserve.close()
            self._reserve = None
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            conn.abort()
        deadline = time.monotonic() + timeout
        for conn in conns:
            conn.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ mode
    @property
    def mode(self) -> Mode:
        """Current fault mode; see the class docstring."""
        return self._mode

    @mode.setter
    def mode(self, value: Mode) -> None:
        value = _check_mode(value)
        with self._cond:
            old = self._mode
            self._mode = value
            self._cond.notify_all()
        if not self._started or old == value:
            return
        if value == "refuse":
            self._close_listener()
            self._reserve = _bound_socket(self.port)
            with self._lock:
                conns = list(self._connections)
            for conn in conns:
                conn.abort()
        elif old == "refuse":
            sock, self._reserve = self._reserve, None
            self._listen(sock if sock is not None else _bound_socket(self.port))

    # ------------------------------------------------------------- recording
    @property
    def records(self) -> list[RelayedRequest]:
        """Copy of every recorded request, in arrival order."""
        with self._lock:
            return list(self._records)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request seen, in arrival order."""
        with self._lock:
            return [(r.method, r.path) for r in self._records]

    @property
    def bytes_down(self) -> int:
        """Total bytes relayed from upstream to clients since start/reset."""
        with self._lock:
            return self._bytes_down

    def wait_quiet(self, quiet: float = 0.4, timeout: float = 10.0) -> None:
        """Wait until no request has arrived for ``quiet`` seconds (2.8 stores a missed blob with a background fetch)."""
        deadline = time.monotonic() + timeout
        seen, since = len(self.records), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = len(self.records)
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
        raise TimeoutError(f"relay still busy after {timeout}s: {self.requests[-5:]}")

    def count(self, method: str, path_contains: str = "") -> int:
        """Number of requests with this method whose path contains the text."""
        method = method.upper()
        with self._lock:
            return sum(1 for r in self._records if r.method == method and path_contains in r.path)

    def blob_gets(self) -> int:
        """Number of ``GET .../blobs/sha256:...`` requests."""
        return self.count("GET", "/blobs/sha256:")

    def manifest_gets(self) -> int:
        """Number of ``GET .../manifests/...`` requests."""
        return self.count("GET", "/manifests/")

    def manifest_heads(self) -> int:
        """Number of ``HEAD .../manifests/...`` requests."""
        return self.count("HEAD", "/manifests/")

    def reset(self) -> None:
        """Forget recorded requests and byte counts (connections stay open)."""
        with self._lock:
            self._records.clear()
            self._bytes_down = 0

    # ------------------------------------------------------------- internals
    def _listen(self, sock: socket.socket) -> None:
        sock.listen(128)
        sock.settimeout(0.1)
        self._listener = sock
        thread = threading.Thread(
            target=self._accept_loop,
            args=(sock,),
            name=f"relay-{self.port}-accept",
            daemon=True,
        )
        self._accept_thread = thread
        thread.start()

    def _close_listener(self) -> None:
        sock, self._listener = self._listener, None
        thread, self._accept_thread = self._accept_thread, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept on Linux
            sock.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stopping:
                    client.close()
                    return
                self._next_conn_id += 1
                conn = _Connection(self, self._next_conn_id, client)
                self._connections.add(conn)
            conn.start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _stall_while_blackhole(self, conn: _Connection) -> bool:
        """Block while the mode is blackhole; False if the connection must end."""
        with self._cond:
            while self._mode == "blackhole" and not self._stopping and not conn.closed:
                self._cond.wait(0.5)
            return not (self._stopping or conn.closed)

    def _on_request(self, conn: _Connection, method: str, path: str) -> None:
        record = RelayedRequest(method=method, path=path, connection=conn.id)
        with self._lock:
            self._records.append(record)
            arm = self._mode == "cut_after_bytes" and method == "GET" and "/blobs/sha256:" in path and self.cut_match in path
        with conn.lock:
            conn.current = record
            conn.response_started = False
            conn.cut_remaining = self.cut_after if arm else None

    def _claim_cut(self) -> bool:
        """Take the one-shot cut; False if it already fired or was cancelled."""
        with self._lock:
            if self._mode != "cut_after_bytes":
                return False
            self._mode = "pass"
            self.cuts += 1
            return True

    def _account(self, record: RelayedRequest | None, n: int) -> None:
        with self._lock:
            self._bytes_down += n
            if record is not None:
                record.bytes_down += n

    def _chunk_size(self) -> int:
        bw = self.bandwidth_bps
        if bw is None or bw <= 0:
            return BUFFER_SIZE
        # about 20 ms of link time per chunk, for smooth pacing
        return max(4096, min(BUFFER_SIZE, int(bw * 0.02)))

    def _pace(self, n: int) -> None:
        bw = self.bandwidth_bps
        if bw is None or bw <= 0:
            return
        with self._pace_lock:
            now = time.monotonic()
            start = max(now, self._link_free_at)
            self._link_free_at = start + n / bw
            wake = self._link_free_at
        delay = wake - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def __repr__(self) -> str:
        return f"HttpRelay(url={self.url!r}, upstream={self.upstream_addr!r}, mode={self._mode!r})"


def _check_mode(value: str) -> Mode:
    if value not in MODES:
        raise ValueError(f"unknown relay mode {value!r}; expected one of {MODES}")
    return cast(Mode, value)


def _parse_upstream(upstream: str | int) -> tuple[str, int]:
    if isinstance(upstream, int):
        return (LOOPBACK, upstream)
    text = upstream.removeprefix("http://").rstrip("/")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"upstream must be HOST:PORT or http://HOST:PORT, got {upstream!r}")
    return (host, int(port))


def _bound_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    return sock
