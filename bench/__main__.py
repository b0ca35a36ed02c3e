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

from bench.imageset import IMAGE_SET, build_image_set
from bench.nodes import default_snapshotter
from bench.report import evaluate_targets, machine_info, now_utc, write_results
from bench.runner import SCENARIO_KEYS, Bench, Options

RESULTS_DIR = Path(__file__).resolve().parent / "results"
QUICK_SCALE = 0.02


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: scale {QUICK_SCALE}, one run per scenario, results in bench/results/quick/ (< 2 min)",
    )
    parser.add_argument("--scale", type=float, help=f"multiply every image size (default 1, or {QUICK_SCALE} with --quick)")
    parser.add_argument("--bandwidth-mbit", type=float, default=100.0, help="link to the upstream, Mbit/s (default 100)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="delay before each upstream response, ms (default 20)")
    parser.add_argument(
        "--repeats", type=int, help="runs of the cheap scenarios (local, warm ...), median reported (default 3, 1 with --quick)"
    )
    parser.add_argument(
        "--snapshotter",
        choices=("auto", "overlayfs", "native"),
        default="auto",
        help="containerd snapshotter for unpacking (default: overlayfs if the kernel has it, as in kind nodes)",
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIO_KEYS), help=f"comma-separated subset of: {', '.join(SCENARIO_KEYS)}"
    )
    parser.add_argument("--out", type=Path, help="results directory (default bench/results, or bench/results/quick with --quick)")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a new one under $TMPDIR, deleted afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (registries' storage, logs)")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="only rewrite results.md and results.png (into --out, default beside it) from a results.json",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if a target fails (the default exits 0: this is a measurement)"
    )
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop every process


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        result["targets"] = evaluate_targets(result["scenarios"])
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
    print(
        f"bench: scale {scale:g}, {args.bandwidth_mbit:g} Mbit/s, {args.latency_ms:g} ms, snapshotter {snapshotter}, "
        f"workdir {workdir}",
        flush=True,
    )
    try:
        image_set = build_image_set(scale, IMAGE_SET)
        print(f"bench: built {len(image_set.images)} images in {time.monotonic() - begin:.1f}s", flush=True)
        opts = Options(
            scale=scale,
            bandwidth_mbit=args.bandwidth_mbit,
            latency_ms=args.latency_ms,
            repeats=repeats,
            snapshotter=snapshotter,
            workdir=workdir,
            scenarios=scenarios,
            keep=args.keep,
            log=lambda line: print(line, flush=True),
        )
        scenario_results = Bench(opts, image_set).run()
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    targets = evaluate_targets(scenario_results)
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
            "machine": machine_info(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        },
        "image_set": {
            "unique_bytes": image_set.unique_bytes,
            "per_repo_bytes": image_set.per_repo_bytes,
            "blob_count": image_set.blob_count,
            "images": image_set.describe(),
        },
        "scenarios": scenario_results,
        "targets": targets,
    }
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
