"""``python -m lowrank``: the command line (see :mod:`lowrank.cli`)."""

from __future__ import annotations

import sys

from lowrank.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
