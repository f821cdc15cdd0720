"""jobkit in a Django project: ``INSTALLED_APPS = [..., "jobkit.contrib.django"]``.

The app reads the ``JOBKIT`` setting (the keys of ``jobs.yaml``: ``storage``, ``jobs``,
``worker``...) instead of ``jobs.yaml``; without ``storage`` the jobs live in Django's default
database, so a view can enqueue inside ``transaction.atomic()`` with
``connection=django.db.connection``. Once Django is set up, the project's app is jobkit's
default app (``jobkit.run_background_job`` uses it), and ``python manage.py jobkit ...`` runs
jobkit's commands on it. Importing this package imports neither Django nor the store:
``settings.py`` may use :func:`storage_url`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from jobkit.contrib.django.settings import storage_url

if TYPE_CHECKING:
    from jobkit.app import JobKit
    from jobkit.config import Config

__all__ = ["get_app", "jobkit_config", "storage_url"]

_app: JobKit | None = None
_lock = threading.Lock()


def jobkit_config() -> Config:
    """The configuration read from the Django settings (``JOBKIT``, ``DATABASES``).

    A setting jobkit cannot use is a ``ConfigError`` naming it (``settings.JOBKIT: jobz:
    unknown key``).
    """
    from jobkit.contrib.django.settings import config_from_settings

    return config_from_settings()


def get_app() -> JobKit:
    """The project's jobkit app, built on first use from :func:`jobkit_config`.

    The store opens when first used. The app config makes it jobkit's default app when
    Django is set up.
    """
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                from jobkit.app import JobKit

                _app = JobKit(jobkit_config())
    return _app
