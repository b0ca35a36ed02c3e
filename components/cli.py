"""Command line of the localdev stack: ``python -m components.cli COMMAND``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from components.config import ConfigError, Settings, parse_settings, stack_values
from components.preflight import missing_prerequisites
from components.render import (
    render_cache_entrypoint,
    render_cache_env,
    render_env_file,
    render_kind_config,
    render_node_hosts,
    render_push_env,
)


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
    settings = load_stack_settings(args.stack)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m components.cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="write the kind config, hosts.toml files and registry environments")
    render.add_argument("outdir", help="directory to write into (created if missing)")
    render.add_argument("--stack", help="read Pulumi.<STACK>.yaml over Pulumi.yaml's defaults (default: defaults only)")
    render.set_defaults(func=cmd_render)
    preflight = sub.add_parser("preflight", help="check that docker, kind and pulumi are ready")
    preflight.set_defaults(func=cmd_preflight)
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
