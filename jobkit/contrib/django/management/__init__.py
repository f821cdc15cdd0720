"""Internal: Django's management commands of :mod:`jobkit.contrib.django`."""
