"""``python -m jobkit``: the ``jobkit`` command."""

from jobkit.cli import main

main()
