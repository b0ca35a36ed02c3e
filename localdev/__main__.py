"""The ``localdev`` console script (and ``python -m localdev``).

The command's modules are imported here, inside ``main``, so that a Python
package missing from the environment is one line saying what to run, not a
traceback from an import at the top of a module.
"""

from __future__ import annotations

import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def main() -> int:
    try:
        from localdev.cli import main as run

        return run()
    except ModuleNotFoundError as err:
        requirements = CHECKOUT / "requirements.txt"
        print(
            f"error: the Python package {err.name!r} is not installed in {sys.prefix}. "
            f"Fix: {sys.executable} -m pip install -r {requirements}",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
