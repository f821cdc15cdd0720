"""Internal: ``python -m jobkit`` runs the ``jobkit`` command (nothing here to import)."""

from jobkit.cli import main

main()
