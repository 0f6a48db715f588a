"""``python scripts/benchmark.py``: the benchmark package (scripts/benchmark/), run as a script."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.benchmark.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
