"""``python -m bench``: measure pulls of the image set with and without the cache."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench.imageset import build_image_set, workload_images
from bench.nodes import default_snapshotter
from bench.report import evaluate_targets, machine_info, now_utc, registry_version, write_results
from bench.runner import DEFAULT_KEYS, SCENARIO_KEYS, Bench, Options
from localdev.settings import PROJECT_DIR

RESULTS_DIR = Path(__file__).resolve().parent / "results"
QUICK_SCALE = 0.02
#: Debian's distribution 2.8 (package docker-registry); a 3.x ``registry`` binary takes the same arguments.
DEFAULT_REGISTRY_BIN = "/usr/bin/docker-registry"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: scale {QUICK_SCALE}, one run per scenario, results in bench/results/quick/ (< 2 min)")
    parser.add_argument("--scale", type=float, help=f"multiply every image size (default 1, or {QUICK_SCALE} with --quick)")
    parser.add_argument("--bandwidth-mbit", type=float, default=100.0, help="link to the upstream, Mbit/s (default 100)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="delay before each upstream response, ms (default 20)")
    parser.add_argument("--repeats", type=int,
                        help="runs of the cheap scenarios (local, warm ...), median reported (default 3, 1 with --quick)")
    parser.add_argument("--snapshotter", choices=("auto", "overlayfs", "native"), default="auto",
                        help="containerd snapshotter for unpacking (default: overlayfs if the kernel has it, as in kind nodes)")
    parser.add_argument("--scenarios", default=",".join(DEFAULT_KEYS),
                        help=f"comma-separated subset of: {', '.join(SCENARIO_KEYS)} (default: all but the last)")
    parser.add_argument("--registry-bin", metavar="PATH", default=DEFAULT_REGISTRY_BIN,
                        help=f"distribution executable every registry runs (default {DEFAULT_REGISTRY_BIN}, Debian's 2.8; "
                             "a 3.x `registry` built from source works the same); its --version goes into the results")
    parser.add_argument("--manifests", type=Path, default=PROJECT_DIR / "k8s", metavar="DIR",
                        help="Kubernetes manifests whose images make the set (default: the project's k8s/)")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results, or bench/results/quick with --quick)")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a new one under $TMPDIR, deleted afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (registries' storage, logs)")
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                        help="only rewrite results.md and results.png (into --out, default beside it) from a results.json")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if a target fails (the default exits 0: this is a measurement)")
    return parser


def _shown(path: Path) -> str:
    """``path`` relative to the project when inside it, so results name no directory of this machine."""
    resolved = path.resolve()
    return str(resolved.relative_to(PROJECT_DIR)) if resolved.is_relative_to(PROJECT_DIR) else str(path)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop every process


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render is not None:
        result: dict[str, Any] = json.loads(args.render.read_text())
        result["targets"] = evaluate_targets(result)
        for path in write_results(result, args.out or args.render.parent):
            print(f"bench: wrote {path}")
        return 0
    scale = args.scale if args.scale is not None else (QUICK_SCALE if args.quick else 1.0)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    out = args.out or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = sorted(set(scenarios) - set(SCENARIO_KEYS))
    if unknown or not scenarios or repeats < 1 or not 0 < scale <= 1:
        print(f"error: bad arguments (unknown scenarios {unknown}, repeats {repeats}, scale {scale})", file=sys.stderr)
        return 2
    registry_bin = shutil.which(args.registry_bin)
    if registry_bin is None:
        print(f"error: --registry-bin {args.registry_bin}: not an executable (install the Debian package "
              "docker-registry, or pass a distribution `registry` binary)", file=sys.stderr)
        return 2
    version = registry_version(registry_bin)
    if os.geteuid() != 0:
        print("error: containerd needs root; run as root", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401 - checked now, not after the measurements it would fail to chart
    except ImportError:
        print("error: the chart needs matplotlib: pip install matplotlib==3.11.2 (requirements-dev.txt)", file=sys.stderr)
        return 2
    snapshotter = default_snapshotter() if args.snapshotter == "auto" else args.snapshotter
    signal.signal(signal.SIGTERM, _terminate)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="localdev-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started, begin, load_before = now_utc(), time.monotonic(), os.getloadavg()
    print(f"bench: scale {scale:g}, {args.bandwidth_mbit:g} Mbit/s, {args.latency_ms:g} ms, snapshotter {snapshotter}, "
          f"registry {registry_bin} ({version['text']}), workdir {workdir}", flush=True)
    try:
        image_set = build_image_set(scale, workload_images(args.manifests))
        print(f"bench: built {len(image_set.images)} images of {_shown(args.manifests)} in {time.monotonic() - begin:.1f}s",
              flush=True)
        opts = Options(scale=scale, bandwidth_mbit=args.bandwidth_mbit, latency_ms=args.latency_ms, repeats=repeats,
                       snapshotter=snapshotter, workdir=workdir, scenarios=scenarios, keep=args.keep,
                       registry_bin=registry_bin, log=lambda line: print(line, flush=True))
        scenario_results = Bench(opts, image_set).run()
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    result = {
        "meta": {
            "mode": "quick" if args.quick else "full",
            "started": started,
            "duration_s": round(time.monotonic() - begin, 1),
            "scale": scale,
            "bandwidth_mbit": args.bandwidth_mbit,
            "latency_ms": args.latency_ms,
            "repeats": repeats,
            "snapshotter": snapshotter,
            "registry_bin": registry_bin,
            "registry_version": version,
            "manifests": _shown(args.manifests),
            "machine": machine_info(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        },
        "image_set": {
            "unique_bytes": image_set.unique_bytes,
            "per_repo_bytes": image_set.per_repo_bytes,
            "blob_count": image_set.blob_count,
            "repo_blob_pairs": image_set.repo_blob_pairs,
            "registries": image_set.registries,
            "images": image_set.describe(),
        },
        "scenarios": scenario_results,
    }
    targets = result["targets"] = evaluate_targets(result)
    for path in write_results(result, out):
        print(f"bench: wrote {path}")
    for target in targets:
        print(f"{target['status']:4}  {target['target']}: {target['detail']}")
    print(f"bench: done in {result['meta']['duration_s']:.0f}s")
    errors = [s for s in scenario_results if "error" in s]
    for s in errors:
        print(f"ERROR {s['title']}: {s['error']}")
    failed = any(t["status"] == "FAIL" for t in targets)
    return 1 if errors or (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
