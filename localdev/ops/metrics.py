"""A pull-through cache's own counters, from its debug server.

* distribution 3.x with ``http.debug.prometheus.enabled``: ``GET /metrics``,
  ``registry_proxy_{requests,hits,misses,pulled_bytes,pushed_bytes}_total``
  labelled ``type="blob"|"manifest"``.
* distribution 2.8: ``GET /debug/vars`` (expvar), ``registry.proxy.blobs`` and
  ``registry.proxy.manifests`` with ``Requests``, ``Hits``, ``Misses``,
  ``BytesPulled``, ``BytesPushed``.

What 2.8.2 actually counts (read in its source, checked against a running
docker-registry 2.8.2 and a relay counting upstream requests):

* manifests: ``Requests`` and ``Hits`` go up on every manifest served (so
  ``Hits == Requests``, a bug); ``Misses``/``BytesPulled`` go up on every
  manifest fetched from upstream. Hits are therefore ``Requests − Misses``.
* blobs: ``Misses`` and ``BytesPulled`` are never incremented, and a blob
  fetched from upstream is counted twice in ``Requests``/``BytesPushed`` (once
  for the client, once for the copy the cache writes to disk). Blob hits,
  misses and bytes pulled cannot be recovered from 2.8's counters; they are
  reported as unknown.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from localdev.ops.registry_api import RegistryError, RegistryUnreachable, normalise_url

_PROM_LINE = re.compile(r"^(registry_proxy_[a-z_]+?)(?:_total)?(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)\s*$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

FOOTNOTE_28_HITS = "distribution 2.8 reports Hits = Requests (a bug); manifest hits are computed as Requests − Misses"
FOOTNOTE_28_BLOBS = (
    "distribution 2.8 never counts blob misses or bytes pulled, and counts each blob it fetches twice "
    "(client + its own disk copy): blob hits, misses, bytes pulled and bandwidth saved are unknown"
)


@dataclass
class Counters:
    requests: int | None = None
    hits: int | None = None
    misses: int | None = None
    pulled_bytes: int | None = None
    pushed_bytes: int | None = None

    @property
    def hit_ratio(self) -> float | None:
        if self.hits is None or not self.requests:
            return None
        return self.hits / self.requests


@dataclass
class ProxyMetrics:
    source: str
    """``prometheus`` or ``expvar``."""
    url: str
    blob: Counters
    manifest: Counters
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_saved(self) -> int | None:
        """Blob bytes served to clients that did not come from upstream: pushed − pulled."""
        if self.blob.pushed_bytes is None or self.blob.pulled_bytes is None:
            return None
        return max(self.blob.pushed_bytes - self.blob.pulled_bytes, 0)

    @property
    def pulls_saved(self) -> int | None:
        """Manifest requests answered without an upstream GET (what Docker Hub counts as pulls)."""
        return self.manifest.hits

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "url": self.url,
            "blob": {**asdict(self.blob), "hit_ratio": self.blob.hit_ratio},
            "manifest": {**asdict(self.manifest), "hit_ratio": self.manifest.hit_ratio},
            "bytes_saved": self.bytes_saved,
            "docker_hub_pulls_saved": self.pulls_saved,
            "notes": list(self.notes),
        }


def parse_prometheus(text: str) -> dict[str, dict[str, float]]:
    """``{type: {metric: value}}`` for the registry_proxy_* samples (summed over other labels)."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = _PROM_LINE.match(line.strip())
        if not m:
            continue
        name = m.group(1).removeprefix("registry_proxy_")
        labels = dict(_LABEL.findall(m.group(2) or ""))
        kind = labels.get("type", "")
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        bucket = out.setdefault(kind, {})
        bucket[name] = bucket.get(name, 0.0) + value
    return out


def from_prometheus(text: str, url: str) -> ProxyMetrics | None:
    samples = parse_prometheus(text)
    if not samples:
        return None

    def counters(kind: str) -> Counters:
        s = samples.get(kind, {})

        def get(key: str) -> int:
            return int(s.get(key, 0))

        hits = get("hits") if "hits" in s else get("requests") - get("misses")
        return Counters(get("requests"), hits, get("misses"), get("pulled_bytes"), get("pushed_bytes"))

    return ProxyMetrics("prometheus", url, counters("blob"), counters("manifest"))


def from_expvar(doc: dict[str, Any], url: str) -> ProxyMetrics | None:
    proxy = (doc.get("registry") or {}).get("proxy")
    if not isinstance(proxy, dict):
        return None

    def raw(kind: str) -> dict[str, int]:
        entry = proxy.get(kind) or {}
        return {k: int(entry.get(k, 0) or 0) for k in ("Requests", "Hits", "Misses", "BytesPulled", "BytesPushed")}

    b, m = raw("blobs"), raw("manifests")
    notes: list[str] = []
    manifest = Counters(m["Requests"], max(m["Requests"] - m["Misses"], 0), m["Misses"], m["BytesPulled"], m["BytesPushed"])
    if m["Requests"] and m["Hits"] == m["Requests"]:
        notes.append(FOOTNOTE_28_HITS)
    broken_blobs = b["Misses"] == 0 and b["BytesPulled"] == 0 and b["Hits"] == b["Requests"]
    if broken_blobs:
        blob = Counters(b["Requests"], None, None, None, b["BytesPushed"])
        if b["Requests"]:
            notes.append(FOOTNOTE_28_BLOBS)
    else:
        blob = Counters(b["Requests"], max(b["Requests"] - b["Misses"], 0), b["Misses"], b["BytesPulled"], b["BytesPushed"])
    return ProxyMetrics("expvar", url, blob, manifest, notes)


def fetch_metrics(debug_url: str, timeout: float = 10.0) -> ProxyMetrics:
    """Read a registry's proxy counters: Prometheus ``/metrics`` first, then expvar ``/debug/vars``."""
    base = normalise_url(debug_url)
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as http:
            prom = http.get(f"{base}/metrics")
            if prom.status_code == 200:
                found = from_prometheus(prom.text, f"{base}/metrics")
                if found is not None:
                    return found
            expvar = http.get(f"{base}/debug/vars")
            if expvar.status_code == 200:
                try:
                    found = from_expvar(json.loads(expvar.content), f"{base}/debug/vars")
                except ValueError:
                    found = None
                if found is not None:
                    return found
    except httpx.ConnectError as err:
        raise RegistryUnreachable(f"cannot reach the metrics endpoint {base} (connection refused)") from err
    except httpx.HTTPError as err:
        raise RegistryUnreachable(f"cannot read metrics from {base} ({type(err).__name__})") from err
    raise RegistryError(f"{base} serves neither registry_proxy_* Prometheus metrics nor expvar registry.proxy")
