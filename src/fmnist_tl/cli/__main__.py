"""`python -m fmnist_tl.cli`: the same as the `fmnist` command."""

from __future__ import annotations

import sys

from fmnist_tl.cli import main

if __name__ == "__main__":
    sys.exit(main())
