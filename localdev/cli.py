"""The ``localdev`` command: render, preflight, status, stats and warm, for the stack in this checkout."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from localdev.errors import UsageError
from localdev.preflight import missing_prerequisites
from localdev.render import (
    render_cache_entrypoint,
    render_cache_env,
    render_env_file,
    render_kind_config,
    render_node_hosts,
    render_push_env,
)
from localdev.settings import PROJECT_DIR, ConfigError, Settings, parse_settings, stack_values


def load_stack_settings(stack: str | None) -> Settings:
    """Settings of ``Pulumi.<stack>.yaml`` over Pulumi.yaml's defaults (defaults only without a stack)."""
    return parse_settings(stack_values(stack) if stack else {})


def render_files(settings: Settings) -> dict[str, str]:
    """Every file ``render`` writes, keyed by path relative to OUTDIR."""
    files = {"kind-config.yaml": render_kind_config(settings)}
    files.update({f"certs.d/{rel}": text for rel, text in render_node_hosts(settings).items()})
    with_credentials = bool(settings.docker_hub_username)
    for mirror in settings.mirrors:
        env = render_cache_env(settings, mirror, with_credentials=with_credentials and mirror.host == "docker.io")
        files[f"registries/{settings.cache_name(mirror)}.env"] = render_env_file(env)
        files[f"registries/{settings.cache_name(mirror)}.entrypoint"] = render_cache_entrypoint()
    files[f"registries/{settings.push_name}.env"] = render_env_file(render_push_env(settings))
    return dict(sorted(files.items()))


def cmd_render(args: argparse.Namespace) -> int:
    stack = resolve_stack(args.stack)
    settings = load_stack_settings(stack)
    print(_stack_header(stack, settings), file=sys.stderr)
    out = Path(args.outdir)
    for rel, text in render_files(settings).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    problems = missing_prerequisites()
    for problem in problems:
        print(f"✗ {problem}", file=sys.stderr)
    if not problems:
        print("✓ docker, kind and pulumi are installed and Docker is running")
    return 1 if problems else 0


# ----------------------------------------------------------------- cache operations
def resolve_stack(stack: str | None) -> str | None:
    """``--stack``, else ``$LOCALDEV_STACK``, else the only ``Pulumi.<stack>.yaml`` there is, else None (defaults)."""
    if stack:
        return stack
    if os.environ.get("LOCALDEV_STACK"):
        return os.environ["LOCALDEV_STACK"]
    stacks = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in PROJECT_DIR.glob("Pulumi.*.yaml"))
    return stacks[0] if len(stacks) == 1 else None


def _stack_header(stack: str | None, settings: Settings) -> str:
    where = f"stack {stack}" if stack else "Pulumi.yaml defaults (no --stack)"
    return f"{where} · cluster {settings.cluster_name}"


def cmd_status(args: argparse.Namespace) -> int:
    from localdev.ops import dockerapi
    from localdev.ops.status import run_status

    stack = resolve_stack(args.stack)
    settings = load_stack_settings(stack)
    return run_status(settings, dockerapi.connect(), sys.stdout, stack=stack)


def cmd_stats(args: argparse.Namespace) -> int:
    from localdev.errors import UsageError
    from localdev.ops import dockerapi
    from localdev.ops.registry_api import normalise_url
    from localdev.ops.stats import Target, collect, stack_targets, write_report
    from localdev.ops.storage import LocalStorage

    if args.registry is None and (args.metrics_url or args.storage):
        raise UsageError("--metrics-url and --storage go with --registry URL (the stack's caches are found by themselves)")
    notes: list[str] = []
    if args.registry is not None:
        url = normalise_url(args.registry)
        metrics_url = normalise_url(args.metrics_url) if args.metrics_url else None
        storage = LocalStorage(Path(args.storage)) if args.storage else None
        targets = [Target(url, "registry", url, metrics_url, storage)]
    else:
        stack = resolve_stack(args.stack)
        settings = load_stack_settings(stack)
        if not args.json:
            print(_stack_header(stack, settings))
        targets, notes = stack_targets(settings, dockerapi.connect)
    reports = [collect(t, timeout=args.timeout) for t in targets]
    write_report(reports, sys.stdout, as_json=args.json, verbose=args.verbose, notes=notes)
    return 0 if all(r.ok for r in reports) else 1


def cmd_warm(args: argparse.Namespace) -> int:
    from localdev.ops.warm import image_jobs, run_warm, stack_warm_targets, target_jobs

    if args.storage and not args.registry:
        raise UsageError("--storage goes with --registry URL (the stack's caches are read through Docker)")
    if args.jobs < 1 or args.jobs > 64:
        raise UsageError(f"--jobs {args.jobs}: use 1 to 64")
    manifests = None if args.no_manifests else (Path(args.manifests) if args.manifests else PROJECT_DIR / "k8s")
    jobs = image_jobs(args.images, manifests, required=bool(args.manifests), err=sys.stderr)
    if not jobs:
        print("nothing to warm: no images given and none found in the manifests")
        return 0
    if args.registry:
        target_jobs(jobs, args.registry, Path(args.storage) if args.storage else None, timeout=args.timeout)
    else:
        stack_warm_targets(jobs, load_stack_settings(resolve_stack(args.stack)), err=sys.stderr)
    return run_warm(
        jobs, jobs_in_parallel=args.jobs, platform=args.platform, timeout=args.timeout, out=sys.stdout, err=sys.stderr
    )


def _ops(func: object) -> object:
    """Run an ops command: expected failures are one line with their exit code, never a traceback."""

    def wrapper(args: argparse.Namespace) -> int:
        from localdev.errors import OpsError

        try:
            return int(func(args))  # type: ignore[operator]
        except OpsError as err:
            print(f"error: {err.line()}", file=sys.stderr)
            return err.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except (ConfigError, OSError):
            raise
        except Exception as err:  # noqa: BLE001 - the command boundary: one line, not a traceback
            if os.environ.get("LOCALDEV_DEBUG"):
                raise
            print(f"error: unexpected {type(err).__name__}: {err} (LOCALDEV_DEBUG=1 shows the traceback)", file=sys.stderr)
            return 1

    return wrapper


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localdev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    stack_help = "read Pulumi.<STACK>.yaml (default: $LOCALDEV_STACK, else the only Pulumi.<stack>.yaml, else defaults)"
    render = sub.add_parser("render", help="write the kind config, hosts.toml files and registry environments")
    render.add_argument("outdir", help="directory to write into (created if missing)")
    render.add_argument("--stack", help=stack_help)
    render.set_defaults(func=cmd_render)
    preflight = sub.add_parser("preflight", help="check that docker, kind and pulumi are ready")
    preflight.set_defaults(func=cmd_preflight)

    status = sub.add_parser("status", help="check the caches, push registry, node hosts.toml files and ConfigMap")
    status.add_argument("--stack", help=stack_help)
    status.set_defaults(func=_ops(cmd_status))

    stats = sub.add_parser("stats", help="what each cache holds, its hit ratio and what it saved")
    stats.add_argument("--stack", help=stack_help)
    stats.add_argument("--registry", metavar="URL", help="report on this registry instead of the stack's caches")
    stats.add_argument("--metrics-url", metavar="URL", help="with --registry: its debug server (/metrics or /debug/vars)")
    stats.add_argument(
        "--storage", metavar="DIR", help="with --registry: its storage rootdirectory, read for exact tags and bytes"
    )
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.add_argument("-v", "--verbose", action="store_true", help="list repositories and tags")
    stats.add_argument("--timeout", type=float, default=30.0, help="seconds per registry request (default 30)")
    stats.set_defaults(func=_ops(cmd_stats))

    warm = sub.add_parser("warm", help="pull every image of k8s/*.yaml (and IMAGEs) through the caches")
    warm.add_argument("images", nargs="*", metavar="IMAGE", help="more images, e.g. redis:7 or ghcr.io/org/app:1.2")
    warm.add_argument("--stack", help=stack_help)
    warm.add_argument("--registry", metavar="URL", help="pull everything through this registry instead of the stack's caches")
    warm.add_argument(
        "--storage", metavar="DIR", help="with --registry: its storage rootdirectory (checks what it holds without asking it)"
    )
    warm.add_argument("--manifests", metavar="DIR", help="Kubernetes manifests to read images from (default: k8s/)")
    warm.add_argument("--no-manifests", action="store_true", help="warm only the IMAGEs given")
    warm.add_argument("--jobs", "-j", type=int, default=4, help="parallel downloads (default 4)")
    warm.add_argument(
        "--platform",
        metavar="LIST",
        help="for multi-platform images: os/arch[,os/arch…] or 'all' (default: this machine's, e.g. linux/amd64)",
    )
    warm.add_argument("--timeout", type=float, default=300.0, help="seconds a request may stall (default 300)")
    warm.set_defaults(func=_ops(cmd_warm))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
