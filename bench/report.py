"""Targets, machine facts and the three result files (markdown, PNG chart, JSON)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

#: The issue's targets. The limits are the targets themselves, never measured figures.
WARM_VS_COLD_MAX = 0.10
WARM_VS_LOCAL_MAX = 1.3
THREE_NODE_BYTES_MAX = 1.5
#: Scenarios whose node pulls must not fetch blobs nor GET manifests upstream.
WARM_KEYS = ("warm", "warm_offline", "three_warm", "three_warm_first_pull", "three_warm_first_prefetch")
THREE_NODE_KEYS = ("three_cold", "three_warm_first_pull", "three_warm_first_prefetch")


def _run(cmd: list[str]) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({exc})"
    return (res.stdout or res.stderr).strip().splitlines()[0] if (res.stdout or res.stderr).strip() else ""


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/meminfo") as fh:
            kb = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
        info["memory_gib"] = round(kb / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        info["memory_gib"] = None
    try:
        with open("/proc/cpuinfo") as fh:
            models = (line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
            info["cpu_model"] = next(models, platform.processor())
    except OSError:
        info["cpu_model"] = platform.processor()
    info["docker_registry"] = _run(["docker-registry", "--version"])
    info["containerd"] = _run(["containerd", "--version"])
    try:
        import matplotlib

        info["matplotlib"] = matplotlib.__version__
    except ImportError:
        info["matplotlib"] = None
    return info


# ------------------------------------------------------------------ targets
def _by_key(scenarios: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Measured scenarios by key (a scenario that failed counts as not measured)."""
    return {s["key"]: s for s in scenarios if "error" not in s}


def measured(scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in scenarios if "error" not in s]


def evaluate_targets(scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per target check: what was measured, the limit, PASS/FAIL (SKIP if not run)."""
    by = _by_key(scenarios)
    out: list[dict[str, Any]] = []

    def add(tid: str, text: str, value: float | None, limit: float, passed: bool | None, detail: str) -> None:
        status = "SKIP" if passed is None else ("PASS" if passed else "FAIL")
        out.append({"id": tid, "target": text, "value": value, "limit": limit, "status": status, "detail": detail})

    def time_ratio(tid: str, text: str, key: str, base_key: str, limit: float, shown: str, unit: str = "") -> None:
        """Target: wall time of scenario ``key`` over that of ``base_key`` at most ``limit``."""
        s, base = by.get(key), by.get(base_key)
        if not (s and base):
            add(tid, text, None, limit, None, "not measured")
            return
        ratio = s["wall_s"] / base["wall_s"]
        add(
            tid,
            text,
            round(ratio, 4),
            limit,
            ratio <= limit,
            f"{key} {s['wall_s']:.2f}s / {base_key} {base['wall_s']:.2f}s = {ratio:{shown}}{unit}",
        )

    time_ratio(
        "warm-vs-cold", "warm-cache pull of the set at most 10% of the cold-cache time", "warm", "cold", WARM_VS_COLD_MAX, ".1%"
    )

    for key in WARM_KEYS:
        s = by.get(key)
        name = f"zero-upstream:{key}"
        text = "warm pulls fetch no blob bytes and send no manifest GET upstream"
        if not s:
            add(name, f"{text} ({key})", None, 0, None, "not measured")
            continue
        up = s["upstream"]  # the nodes' pulls only (a warm step is reported apart)
        value = up["blob_bytes"] + up["manifest_gets"]
        add(
            name,
            f"{text} ({s['title']})",
            value,
            0,
            value == 0,
            f"blob bytes {up['blob_bytes']}, blob GETs {up['blob_gets']}, manifest GETs {up['manifest_gets']}; "
            f"manifest HEADs {up['manifest_heads']} (not counted by Docker Hub)",
        )

    time_ratio(
        "warm-vs-local",
        "warm-cache pull within 1.3x of the plain-local-registry limit",
        "warm",
        "local",
        WARM_VS_LOCAL_MAX,
        ".2f",
        "x",
    )

    for key in THREE_NODE_KEYS:
        s = by.get(key)
        name = f"three-node-bytes:{key}"
        text = "3 nodes: upstream bytes at most 1.5x the image bytes"
        if not s:
            add(name, f"{text} ({key})", None, THREE_NODE_BYTES_MAX, None, "not measured")
            continue
        ratio = s["upstream_over_image_bytes"]
        add(
            name,
            f"{text} ({s['title']})",
            ratio,
            THREE_NODE_BYTES_MAX,
            ratio <= THREE_NODE_BYTES_MAX,
            f"{s['upstream_total']['bytes'] / 1e6:.1f} MB upstream for {ratio:.2f}x the image bytes"
            + (" (warm step included)" if s.get("warm_step") else ""),
        )
    return out


# ----------------------------------------------------------------- markdown
def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def markdown(result: dict[str, Any]) -> str:
    meta, img = result["meta"], result["image_set"]
    m = meta["machine"]
    by = _by_key(result["scenarios"])
    local = by.get("local")
    lines = [
        f"# Pull benchmark: {meta['mode']} run",
        "",
        f"Image set: {len(img['images'])} images at scale {meta['scale']:g}, {_mb(img['unique_bytes'])} MB of distinct "
        f"content ({_mb(img['per_repo_bytes'])} MB counting shared base layers once per image), {img['blob_count']} blobs. "
        f"Link to the upstream: {meta['bandwidth_mbit']:g} Mbit/s, {meta['latency_ms']:g} ms per response. "
        f"Snapshotter {meta['snapshotter']}; repeated scenarios: median of {meta['repeats']}.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"{m['docker_registry']}; {m['containerd']}. Run {meta['started']} in {meta['duration_s']:.0f} s.",
        "",
        "| scenario | nodes | wall time (s) | x local | upstream MB | / image bytes "
        "| manifest GETs | manifest HEADs | blob GETs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in result["scenarios"]:
        if "error" in s:
            lines.append(f"| {s['title']} | {s['nodes']} | ERROR: {s['error'][:200]} | | | | | | |")
            continue
        up = s["upstream_total"]
        wall = f"{s['wall_s']:.2f}"
        if s.get("warm_step"):
            wall += f" (+{s['warm_step']['wall_s']:.2f} warm step)"
        vs_local = f"{s['wall_s'] / local['wall_s']:.2f}" if local else "-"
        lines.append(
            f"| {s['title']} | {s['nodes']} | {wall} | {vs_local} | {_mb(up['bytes'])} | {s['upstream_over_image_bytes']:.2f} | "
            f"{up['manifest_gets']} | {up['manifest_heads']} | {up['blob_gets']} |"
        )
    lines += [
        "",
        "Wall time: from the first node's first `ctr images pull` to the last node's last one (10 images, one after "
        "another per node). Upstream figures are what crossed the link, read after the cache finished its background "
        'fetches; for "warm first" they include the warm step. "/ image bytes" divides by the distinct content.',
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "|---|---|---|",
    ]
    lines += [f"| {t['target']} | {t['detail']} | {t['status']} |" for t in result["targets"]]
    lines.append("")
    return "\n".join(lines)


# -------------------------------------------------------------------- chart
def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = measured(result["scenarios"])
    if not scenarios:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no scenario was measured", ha="center", va="center")
        ax.axis("off")
        fig.savefig(path, dpi=110, format="png")
        plt.close(fig)
        return
    titles = [s["title"] for s in scenarios][::-1]
    walls = [s["wall_s"] for s in scenarios][::-1]
    warm_steps = [(s["warm_step"] or {}).get("wall_s", 0.0) for s in scenarios][::-1]
    ratios = [s["upstream_over_image_bytes"] for s in scenarios][::-1]
    meta = result["meta"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.55 * len(scenarios) + 2.2), sharey=True)
    y = range(len(titles))
    # A warm step happens before the nodes pull: draw it first, the nodes' pull after it.
    ax1.barh(y, warm_steps, color="#c4d3e8", label="warm step (before the nodes pull)")
    ax1.barh(y, walls, left=warm_steps, color="#4c72b0", label="nodes pulling the set")
    for i, (w, extra) in enumerate(zip(walls, warm_steps, strict=True)):
        label = f" {w:.1f}s" + (f" (+{extra:.1f}s warm step)" if extra else "")
        ax1.text(w + extra, i, label, va="center", fontsize=8)
    ax1.set_xlim(0, max(w + e for w, e in zip(walls, warm_steps, strict=True)) * 1.45)
    ax1.set_yticks(list(y), titles)
    ax1.set_xlabel("wall time to pull the set (s)")
    ax1.legend(loc="upper right", fontsize=8)
    ax2.barh(y, ratios, color="#dd8452")
    for i, r in enumerate(ratios):
        ax2.text(r, i, f" {r:.2f}x", va="center", fontsize=8)
    ax2.set_xlim(0, max([*ratios, THREE_NODE_BYTES_MAX]) * 1.2)
    ax2.axvline(THREE_NODE_BYTES_MAX, color="grey", linestyle="--", linewidth=1)
    ax2.set_xlabel("bytes from upstream / image bytes  (dashed: 1.5x target)")
    fig.suptitle(
        f"localdev pull benchmark ({meta['mode']}): scale {meta['scale']:g}, {meta['bandwidth_mbit']:g} Mbit/s, "
        f"{meta['latency_ms']:g} ms\n{meta['machine']['docker_registry']}; {meta['machine']['containerd']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


# -------------------------------------------------------------------- files
def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_results(result: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.md", out / "results.png"]
    _atomic_write(paths[0], lambda p: p.write_text(json.dumps(result, indent=2) + "\n"))
    _atomic_write(paths[1], lambda p: p.write_text(markdown(result)))
    _atomic_write(paths[2], lambda p: chart(result, p))
    return paths


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
