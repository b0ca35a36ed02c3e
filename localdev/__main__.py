"""``python -m localdev``: the same as the ``localdev`` command."""

import sys

from localdev.cli import main

if __name__ == "__main__":
    sys.exit(main())
