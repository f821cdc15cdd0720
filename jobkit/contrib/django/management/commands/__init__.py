"""Internal: ``python manage.py jobkit`` (:mod:`.jobkit`)."""
