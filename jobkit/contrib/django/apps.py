"""Internal: the Django app config of :mod:`jobkit.contrib.django` (label ``jobkit``)."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate

from jobkit.app import set_default_app
from jobkit.contrib.django import get_app


class JobkitConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    """Checks the ``JOBKIT`` setting when Django starts and makes its app the default app.

    ``manage.py migrate`` opens the store too, so jobkit's tables exist before a view first
    enqueues inside a transaction.
    """

    name = "jobkit.contrib.django"
    label = "jobkit"
    verbose_name = "jobkit"

    def ready(self) -> None:
        """Build the app (a settings error stops Django's start-up); the store opens later."""
        set_default_app(get_app())
        # sent for apps with models only: this one has none, so it listens to every app's
        post_migrate.connect(_open_store, dispatch_uid="jobkit.contrib.django")


def _open_store(**_: Any) -> None:
    """After ``manage.py migrate``: the store opened, which creates or migrates its tables."""
    get_app().storage  # noqa: B018 - opening it is the point
