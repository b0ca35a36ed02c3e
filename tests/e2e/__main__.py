"""By hand: ``python -m tests.e2e up [--stack NAME]`` / ``python -m tests.e2e down [--keep-volumes]``.

``up`` starts the private engine (with its egress guard) when none answers, builds the stand-in
images when missing, starts the test's upstream registry and applies the program's resources;
it leaves everything running and prints, last, the two lines to paste into a shell.
``down`` destroys the stack and the upstream; the cache volumes go too unless --keep-volumes.
The engine itself keeps running: ``tests/e2e/engine.sh stop`` and ``guard-remove`` end it.
"""

from __future__ import annotations

import argparse
import sys

from .docker import docker
from .environment import UPSTREAM, Environment
from .executor import ExecutorError
from .stack import DEFAULT_STACK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="bring the stack up on the private engine and leave it running")
    up.add_argument("--stack", default=DEFAULT_STACK, help="cluster name of the test stack (default: %(default)s)")
    down = sub.add_parser("down", help="take the stack down")
    down.add_argument("--stack", default=DEFAULT_STACK)
    down.add_argument("--keep-volumes", action="store_true", help="keep the caches' and upstream's volumes")
    args = parser.parse_args(argv)
    env = Environment(args.stack)
    try:
        if args.command == "up":
            steps = env.up()
            changed = [s for s in steps if s.op != "same"]
            print(f"{len(changed)} changes, {len(steps) - len(changed)} unchanged", file=sys.stderr)
            print(f"export DOCKER_HOST={env.tools()['DOCKER_HOST']}")
            print(f"export LOCALDEV_E2E_UPSTREAM={env.start_upstream(env.stack().settings().registry_image)}")
        else:
            env.destroy()
            docker("rm", "-f", UPSTREAM, check=False)
            if not args.keep_volumes:
                env.remove_volumes()
    except (ExecutorError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
