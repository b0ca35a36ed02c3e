"""localdev: the command line of a kind cluster whose image pulls go through local caches.

It reads this checkout's Pulumi.yaml and Pulumi.<stack>.yaml (found from the
working directory, as pulumi finds them) and checks the settings with the same
function as `pulumi up`. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from localdev.errors import OpsError, UsageError
from localdev.preflight import check_prerequisites
from localdev.render import (
    render_cache_entrypoint,
    render_cache_env,
    render_env_file,
    render_kind_config,
    render_network_attachment_command,
    render_node_hosts,
    render_node_wiring_command,
    render_push_env,
    render_workload_config_maps,
)
from localdev.settings import (
    ConfigError,
    Settings,
    find_project_dir,
    load_schema,
    load_stack,
)
from localdev.settings import resolve_stack as resolve_stack_in


def resolve_stack(stack: str | None) -> str | None:
    """``--stack``, else ``$LOCALDEV_STACK``, else the only stack file; several and no choice is refused."""
    return resolve_stack_in(stack, find_project_dir())


def load_stack_settings(stack: str | None) -> Settings:
    """Settings of ``Pulumi.<stack>.yaml`` over Pulumi.yaml's defaults (defaults only without a stack)."""
    return load_stack(stack, find_project_dir())


def _stack_settings(stack_arg: str | None) -> tuple[str | None, Settings]:
    stack = resolve_stack(stack_arg)
    return stack, load_stack_settings(stack)


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
    for key, data in render_workload_config_maps(settings).items():
        files.update({f"workloads/{key}/{name}": text for name, text in data.items()})
    return dict(sorted(files.items()))


def _directory_argument(flag: str, text: str, *, must_exist: bool = True) -> Path:
    """A directory argument, or a one-line usage error saying what it is instead."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {text}: not a directory (it is a file)", fix=f"give {flag} a directory")
    if must_exist and not path.is_dir():
        raise UsageError(f"{flag} {text}: no such directory", fix=f"give {flag} an existing directory")
    return path


def _storage_argument(text: str) -> Path:
    path = _directory_argument("--storage", text)
    # An empty directory is a registry that stores nothing yet; anything else must hold distribution's tree.
    if any(path.iterdir()) and not (path / "docker" / "registry" / "v2").is_dir():
        raise UsageError(
            f"--storage {text}: no docker/registry/v2 under it, so it is not a registry's storage",
            fix="pass the registry's rootdirectory (storage.filesystem.rootdirectory, /var/lib/registry in the image)",
        )
    return path


def cmd_render(args: argparse.Namespace) -> int:
    out = _directory_argument("OUTDIR", args.outdir, must_exist=False)
    stack, settings = _stack_settings(args.stack)
    print(_stack_header(stack, settings), file=sys.stderr)
    for rel, text in render_files(settings).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    """Every problem at once, each with its fix; the node image's kind requirement comes from the stack.

    A stack file that does not exist yet is fine (``scripts/up STACK`` creates it); a broken one is
    one more problem.
    """
    stack_problem = None
    try:
        node_image = _stack_settings(args.stack)[1].node_image
    except ConfigError as err:
        node_image = str(load_schema(find_project_dir())["nodeImage"]["default"])
        stack_problem = None if err.source == "--stack" else str(err)
    good, bad = check_prerequisites(node_image)
    if stack_problem:
        bad.append(stack_problem)
    for line in good:
        print(f"✓ {line}")
    for line in bad:
        print(f"✗ {line}", file=sys.stderr)
    return 1 if bad else 0


def cmd_rewire(args: argparse.Namespace) -> int:
    """Run the program's own wiring scripts again: registries onto the kind network, hosts.toml into every node.

    ``pulumi up`` does not re-run a local Command whose inputs did not change, so a
    node re-created by hand or a registry detached from the network stays broken
    until these run again. Both scripts are idempotent.
    """
    _, settings = _stack_settings(args.stack)
    commands = [
        ("attach the registries to the kind network", render_network_attachment_command(settings)),
        ("write the registries' hosts.toml into every node", render_node_wiring_command(settings)),
    ]
    for what, shell in commands:
        if args.dry_run:
            params = "".join(f"# {key}={shlex.quote(value)}\n" for key, value in sorted(shell.environment.items()))
            print(f"# {what}, with:\n{params}{shell.create}")
            continue
        print(f"localdev rewire: {what}", file=sys.stderr)
        # As pulumi-command's local Command runs it: /bin/sh -c SCRIPT, its parameters in the environment.
        done = subprocess.run(
            ["/bin/sh", "-c", shell.create], env={**os.environ, **shell.environment}, input=shell.stdin, text=True, check=False
        )
        if done.returncode != 0:
            check = f"check `kind get nodes --name {settings.cluster_name}` and `docker ps`"
            raise OpsError(f"{what} failed (exit {done.returncode})", fix=check)
    return 0


def _stack_header(stack: str | None, settings: Settings) -> str:
    where = f"stack {stack}" if stack else "Pulumi.yaml defaults (no stack file)"
    return f"{where} · cluster {settings.cluster_name}"


def cmd_status(args: argparse.Namespace) -> int:
    from localdev.ops import dockerapi
    from localdev.ops.status import run_status

    stack, settings = _stack_settings(args.stack)
    return run_status(settings, dockerapi.connect(), sys.stdout, stack=stack)


def _metrics_url(text: str) -> str:
    """A debug server's base URL; its ``/metrics`` or ``/debug/vars`` path, if given, is dropped."""
    from localdev.ops.registry_api import normalise_url

    base = text.strip().rstrip("/")
    for suffix in ("/metrics", "/debug/vars"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    try:
        return normalise_url(base)
    except UsageError as err:
        raise UsageError(
            f"--metrics-url {text}: must be the debug server's scheme://host[:port] (optionally with /metrics or /debug/vars)",
            fix="e.g. --metrics-url http://127.0.0.1:5100",
        ) from err


def cmd_stats(args: argparse.Namespace) -> int:
    from localdev.ops import dockerapi
    from localdev.ops.registry_api import normalise_url
    from localdev.ops.stats import Target, collect, stack_targets, write_report
    from localdev.ops.storage import LocalStorage

    if args.registry is None and (args.metrics_url or args.storage):
        raise UsageError("--metrics-url and --storage go with --registry URL (the stack's caches are found by themselves)")
    notes: list[str] = []
    if args.registry is not None:
        url = normalise_url(args.registry)
        metrics_url = _metrics_url(args.metrics_url) if args.metrics_url else None
        storage = LocalStorage(_storage_argument(args.storage)) if args.storage else None
        targets = [Target(url, "registry", url, metrics_url, storage)]
    else:
        stack, settings = _stack_settings(args.stack)
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
    storage = _storage_argument(args.storage) if args.storage else None
    # The stack is read (and checked) first, even when there turns out to be nothing to warm.
    settings = None if args.registry else _stack_settings(args.stack)[1]
    if args.no_manifests:
        manifests = None
    else:
        manifests = _directory_argument("--manifests", args.manifests) if args.manifests else find_project_dir() / "k8s"
    jobs = image_jobs(args.images, manifests, required=bool(args.manifests), err=sys.stderr)
    if not jobs:
        print("nothing to warm: no images given and none found in the manifests")
        return 0
    if settings is None:
        target_jobs(jobs, args.registry, storage, timeout=args.timeout)
    else:
        stack_warm_targets(jobs, settings, err=sys.stderr)
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
        except (ConfigError, OSError, ModuleNotFoundError):
            raise
        except Exception as err:  # noqa: BLE001 - the command boundary: one line, not a traceback
            if os.environ.get("LOCALDEV_DEBUG"):
                raise
            print(f"error: unexpected {type(err).__name__}: {err} (LOCALDEV_DEBUG=1 shows the traceback)", file=sys.stderr)
            return 1

    return wrapper


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (argparse prints the whole usage block first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0, e.g. 30")
    return value


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{text!r}: use a whole number from 1 to 64")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="localdev", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stack_help = "read Pulumi.<STACK>.yaml (default: $LOCALDEV_STACK, else the only Pulumi.<stack>.yaml there is)"
    render = sub.add_parser("render", help="write the kind config, hosts.toml files and registry environments")
    render.add_argument("outdir", metavar="OUTDIR", help="directory to write into (created if missing)")
    render.add_argument("--stack", help=stack_help)
    render.set_defaults(func=_ops(cmd_render))
    preflight = sub.add_parser("preflight", help="check Python, Docker, kind and Pulumi and their versions")
    preflight.add_argument("--stack", help=f"{stack_help}; its nodeImage sets the kind version needed")
    preflight.set_defaults(func=_ops(cmd_preflight))

    status = sub.add_parser("status", help="check the caches, push registry, node hosts.toml files and ConfigMap")
    status.add_argument("--stack", help=stack_help)
    status.set_defaults(func=_ops(cmd_status))

    rewire = sub.add_parser(
        "rewire", help="run the program's wiring scripts again (network attachment, hosts.toml in every node)"
    )
    rewire.add_argument("--stack", help=stack_help)
    rewire.add_argument("--dry-run", action="store_true", help="print the scripts instead of running them")
    rewire.set_defaults(func=_ops(cmd_rewire))

    stats = sub.add_parser("stats", help="what each cache holds, its hit ratio and what it saved")
    stats.add_argument("--stack", help=stack_help)
    stats.add_argument("--registry", metavar="URL", help="report on this registry instead of the stack's caches")
    stats.add_argument("--metrics-url", metavar="URL", help="with --registry: its debug server (/metrics or /debug/vars)")
    stats.add_argument(
        "--storage", metavar="DIR", help="with --registry: its storage rootdirectory, read for exact tags and bytes"
    )
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.add_argument("-v", "--verbose", action="store_true", help="list repositories and tags")
    stats.add_argument("--timeout", type=_seconds, default=30.0, help="seconds per registry request (default 30)")
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
    warm.add_argument("--jobs", "-j", type=_jobs, default=4, help="parallel downloads, 1 to 64 (default 4)")
    warm.add_argument(
        "--platform",
        metavar="LIST",
        help="for multi-platform images: os/arch[,os/arch...] or 'all' (default: this machine's, e.g. linux/amd64)",
    )
    warm.add_argument("--timeout", type=_seconds, default=300.0, help="seconds a request may stall (default 300)")
    warm.set_defaults(func=_ops(cmd_warm))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
