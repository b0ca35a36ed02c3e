"""A small OCI distribution (registry v2 HTTP API) client on httpx.

Handles what the commands need: ``/v2/`` ping, ``_catalog`` and ``tags/list``
with ``Link`` pagination, manifests (image manifests and indexes, digest
verified), streaming blob reads, and the bearer-token dance of real
registries: a 401 with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…``
is answered by fetching an anonymous token from ``realm`` and retrying.

Every failure is a :class:`RegistryError` with a one-line message.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from localdev.errors import OpsError, UsageError
from localdev.images import sha256_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SCHEMA1_TYPES = frozenset(
    {"application/vnd.docker.distribution.manifest.v1+json", "application/vnd.docker.distribution.manifest.v1+prettyjws"}
)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

USER_AGENT = "localdev-cli (python-httpx)"


class RegistryError(OpsError):
    """The registry could not be reached, refused, or answered something unusable."""


class RegistryUnreachable(RegistryError):
    pass


class AuthRequired(RegistryError):
    pass


class NotFound(RegistryError):
    pass


def normalise_url(text: str) -> str:
    """``127.0.0.1:5000`` → ``http://127.0.0.1:5000``; ``ghcr.io`` → ``https://ghcr.io``.

    Loopback hosts default to http, anything else to https. Raise UsageError on
    anything that is not ``[scheme://]host[:port][/]``.
    """
    raw = text.strip()
    candidate = raw if "://" in raw else f"//{raw}"
    try:
        url = httpx.URL(candidate)
        port = url.port
    except (httpx.InvalidURL, ValueError) as err:
        raise UsageError(f"registry URL {text!r} is malformed ({err})") from err
    if "://" in raw and url.scheme not in ("http", "https"):
        raise UsageError(f"registry URL {text!r}: scheme must be http or https")
    if not url.host or url.path not in ("", "/") or url.query or url.fragment:
        raise UsageError(f"registry URL {text!r} must be scheme://host[:port], e.g. http://127.0.0.1:5000")
    scheme = url.scheme if "://" in raw else ("http" if is_loopback(url.host) else "https")
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor from a manifest."""

    digest: str
    size: int
    media_type: str = ""
    platform: str | None = None
    """``os/architecture[/variant]`` for an index entry, else None."""


def platform_of(entry: dict[str, Any]) -> str | None:
    plat = entry.get("platform")
    if not isinstance(plat, dict):
        return None
    text = f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"
    if plat.get("variant"):
        text += f"/{plat['variant']}"
    return text


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry served it."""

    digest: str
    media_type: str
    raw: bytes
    doc: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or (not self.media_type and "manifests" in self.doc)

    def children(self) -> list[Descriptor]:
        """Entries of an index."""
        return [
            Descriptor(str(m["digest"]), int(m.get("size", 0)), str(m.get("mediaType", "")), platform_of(m))
            for m in self.doc.get("manifests") or []
            if isinstance(m, dict) and "digest" in m
        ]

    def blobs(self) -> list[Descriptor]:
        """Config and layers of an image manifest (foreign layers with ``urls`` excluded)."""
        entries = [self.doc.get("config"), *(self.doc.get("layers") or [])]
        return [
            Descriptor(str(d["digest"]), int(d.get("size", 0)), str(d.get("mediaType", "")))
            for d in entries
            if isinstance(d, dict) and "digest" in d and not d.get("urls")
        ]


def parse_manifest(raw: bytes, digest: str, content_type: str = "") -> Manifest:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise RegistryError(f"manifest {digest} is not JSON ({err})") from err
    if not isinstance(doc, dict):
        raise RegistryError(f"manifest {digest} is not a JSON object")
    media_type = str(doc.get("mediaType") or content_type.split(";")[0].strip())
    if doc.get("schemaVersion") == 1 or media_type in SCHEMA1_TYPES:
        raise RegistryError(f"manifest {digest} is a schema 1 manifest, which is not supported")
    return Manifest(digest=digest, media_type=media_type, raw=raw, doc=doc)


_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="x",service="y",scope="a,b"`` → ``("bearer", {...})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


def error_summary(resp: httpx.Response) -> str:
    """``CODE: message`` from a distribution error body, or the status text."""
    try:
        body = json.loads(resp.read() or b"{}")
        errors = body.get("errors") or []
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors if isinstance(e, dict)]
        if parts:
            return "; ".join(parts)
    except Exception:  # noqa: BLE001 - any unreadable body falls back to the status text
        pass
    return resp.reason_phrase or f"HTTP {resp.status_code}"


def _next_link(resp: httpx.Response) -> str | None:
    link = resp.headers.get("link", "")
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
    return match.group(1) if match else None


class RegistryClient:
    """One registry; thread-safe (httpx.Client is, and the token cache is locked)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        username: str | None = None,
        password: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base = normalise_url(url)
        host = httpx.URL(self.base).host
        self.http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,  # blobs may redirect to object storage; httpx drops Authorization across origins
            trust_env=not is_loopback(host),  # HTTP(S)_PROXY for real registries, never for the local caches
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )
        self.timeout = timeout
        self._basic = (username, password) if username and password else None
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ core
    def _send(
        self,
        method: str,
        path_or_url: str,
        *,
        scope_key: str = "",
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        url = path_or_url if "://" in path_or_url else f"{self.base}{path_or_url}"
        for attempt in range(2):
            hdrs = dict(headers or {})
            with self._lock:
                token = self._tokens.get(scope_key)
            if token:
                hdrs["Authorization"] = token
            request = self.http.build_request(method, url, headers=hdrs)
            try:
                resp = self.http.send(request, stream=stream)
            except httpx.ConnectError as err:
                raise RegistryUnreachable(f"cannot reach the registry at {self.base} ({_reason(err)}): is it running?") from err
            except httpx.TimeoutException as err:
                raise RegistryUnreachable(f"the registry at {self.base} did not answer within {self.timeout:.0f}s") from err
            except httpx.HTTPError as err:
                raise RegistryError(f"{method} {url} failed: {_reason(err)}") from err
            if resp.status_code == 401 and attempt == 0:
                challenge = resp.headers.get("www-authenticate", "")
                resp.close()
                self._authorize(challenge, scope_key)
                continue
            return resp
        return resp

    def _authorize(self, challenge: str, scope_key: str) -> None:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if not self._basic:
                raise AuthRequired(f"{self.base} requires a username and password (HTTP basic auth)")
            user, password = self._basic
            header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            with self._lock:
                self._tokens[scope_key] = header
            return
        if scheme != "bearer" or "realm" not in params:
            raise AuthRequired(f"{self.base} requires authentication this tool does not support ({challenge or 'no challenge'})")
        query = {k: params[k] for k in ("service", "scope") if params.get(k)}
        auth = httpx.BasicAuth(*self._basic) if self._basic else None
        try:
            resp = self.http.get(params["realm"], params=query, auth=auth)
        except httpx.HTTPError as err:
            raise AuthRequired(f"cannot get a token from {params['realm']} for {self.base}: {_reason(err)}") from err
        if resp.status_code != 200:
            raise AuthRequired(
                f"token service {params['realm']} refused {query.get('scope', 'access')} "
                f"(HTTP {resp.status_code}): the image may be private or not exist"
            )
        token: str | None
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise AuthRequired(f"token service {params['realm']} sent no token")
        with self._lock:
            self._tokens[scope_key] = f"Bearer {token}"

    def _check(self, resp: httpx.Response, what: str) -> httpx.Response:
        if resp.is_success:
            return resp
        summary = error_summary(resp)
        resp.close()
        if resp.status_code == 404:
            raise NotFound(f"{what}: not found at {self.base} ({summary})")
        if resp.status_code in (401, 403):
            raise AuthRequired(f"{what}: {self.base} refused access (HTTP {resp.status_code}, {summary})")
        if resp.status_code == 429:
            raise RegistryError(f"{what}: rate limited by {self.base} ({summary}); wait, or log in for a higher limit")
        raise RegistryError(f"{what}: {self.base} answered HTTP {resp.status_code} ({summary})")

    # ------------------------------------------------------------------- API
    def ping(self) -> None:
        """GET /v2/: raise unless the registry answers as a registry."""
        resp = self._send("GET", "/v2/")
        resp.close()
        if resp.status_code not in (200, 401):
            self._check(resp, "GET /v2/")

    def _paged(self, path: str, key: str, scope_key: str, what: str) -> list[str]:
        items: list[str] = []
        url: str | None = path
        seen: set[str] = set()
        while url and url not in seen:
            seen.add(url)
            resp = self._check(self._send("GET", url, scope_key=scope_key), what)
            try:
                items.extend(str(x) for x in resp.json().get(key) or [])
            except ValueError as err:
                raise RegistryError(f"{what}: {self.base} sent invalid JSON") from err
            nxt = _next_link(resp)
            url = str(httpx.URL(self.base + "/").join(nxt)) if nxt else None
        return items

    def catalog(self, page_size: int = 1000) -> list[str]:
        """Every repository in ``/v2/_catalog`` (following ``Link: rel=next``)."""
        return self._paged(f"/v2/_catalog?n={page_size}", "repositories", "*catalog*", "GET /v2/_catalog")

    def tags(self, repository: str, page_size: int = 1000) -> list[str]:
        """``/v2/<repo>/tags/list``. NB: a pull-through cache answers this with its upstream's list."""
        return self._paged(f"/v2/{repository}/tags/list?n={page_size}", "tags", repository, f"tags of {repository}")

    def manifest(self, repository: str, reference: str) -> Manifest:
        """GET a manifest (or index) by tag or digest; the body is checked against a digest reference."""
        what = f"{repository}:{reference}" if not reference.startswith("sha256:") else f"{repository}@{reference}"
        resp = self._check(
            self._send(
                "GET", f"/v2/{repository}/manifests/{reference}", scope_key=repository, headers={"Accept": MANIFEST_ACCEPT}
            ),
            what,
        )
        raw = resp.content
        digest = sha256_digest(raw)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{what}: {self.base} sent content with digest {digest}")
        return parse_manifest(raw, digest, resp.headers.get("content-type", ""))

    @contextmanager
    def blob(self, repository: str, digest: str, *, first_byte_only: bool = False) -> Iterator[httpx.Response]:
        """Open ``GET /v2/<repo>/blobs/<digest>`` as a stream (``Range: bytes=0-0`` if ``first_byte_only``)."""
        headers = {"Range": "bytes=0-0"} if first_byte_only else {}
        resp = self._send("GET", f"/v2/{repository}/blobs/{digest}", scope_key=repository, headers=headers, stream=True)
        try:
            self._check(resp, f"blob {digest[:19]} of {repository}")
            yield resp
        finally:
            resp.close()

    def upload_probe(self, repository: str) -> bool | None:
        """Does the registry accept uploads? True, False (405: pull-through cache or read-only), None (unknown).

        On a registry that accepts uploads, the upload session this opens is
        cancelled at once (``DELETE`` of its ``Location``).
        """
        resp = self._send("POST", f"/v2/{repository}/blobs/uploads/", scope_key=repository)
        try:
            if resp.status_code == 405:
                return False
            if resp.status_code == 202:
                location = resp.headers.get("location")
                if location:
                    target = str(httpx.URL(self.base + "/").join(location))
                    self._send("DELETE", target, scope_key=repository).close()
                return True
            return None
        finally:
            resp.close()


def served_from_storage(resp: httpx.Response) -> bool:
    """Did a ``Range: bytes=0-0`` blob request come from the registry's own storage?

    distribution serves stored blobs with ``http.ServeContent``: the range is
    honoured (206) and the answer carries ``Cache-Control: max-age=…`` and a
    quoted ETag. A blob a pull-through cache streams from upstream comes with an
    unquoted ETag and no Cache-Control (2.8.2 ignores the range: 200 and the
    whole body; newer 3.x answer 206). Verified against docker-registry 2.8.2.
    """
    if resp.status_code != 206:
        return False
    return "cache-control" in resp.headers or resp.headers.get("etag", "").startswith('"')


def _reason(err: Exception) -> str:
    text = str(err) or type(err).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return " ".join(text.split())[:200]
