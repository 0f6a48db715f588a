"""``python -m scripts.benchmark``: see the package's docstring (or ``--help``)."""

from scripts.benchmark.cli import main

main()
