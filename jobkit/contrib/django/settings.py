"""Internal: the ``JOBKIT`` Django setting read as jobkit's configuration.

``JOBKIT`` takes the keys of ``jobs.yaml``; without ``storage``, the store is Django's
``DATABASES["default"]`` (a SQLite file or a PostgreSQL database), so jobs can be enqueued in
the same transaction as the project's rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jobkit.config import Config
from jobkit.exceptions import ConfigError

#: How errors name the setting.
SOURCE = "settings.JOBKIT"


def config_from_settings() -> Config:
    """The ``JOBKIT`` setting as a ``Config``; a ``ConfigError`` naming what is wrong."""
    from django.conf import settings

    data = getattr(settings, "JOBKIT", {})
    if not isinstance(data, Mapping):
        raise ConfigError(f"{SOURCE}: expected a dict of jobs.yaml's keys, "
                          f"got {type(data).__name__}")
    data = dict(data)
    if data.get("storage") is None:
        data["storage"] = storage_url(settings.DATABASES.get("default", {}))
    return Config.from_dict(data, source=SOURCE)


def storage_url(database: Mapping[str, Any]) -> str:
    """jobkit's storage URL for a Django ``DATABASES`` entry (SQLite or PostgreSQL)."""
    engine = str(database.get("ENGINE", ""))
    if engine == "django.db.backends.sqlite3":
        name = str(database.get("NAME", ""))
        if not name or name == ":memory:" or name.startswith("file:"):
            raise ConfigError(f"{SOURCE}: no 'storage', and DATABASES['default'] is the "
                              f"SQLite database {name!r}, not a file jobkit can share: "
                              "set JOBKIT['storage']")
        return f"sqlite:///{Path(name).resolve()}"
    if engine.startswith("django.db.backends.postgresql"):
        return _postgres_url(database)
    raise ConfigError(f"{SOURCE}: no 'storage', and DATABASES['default'] uses {engine!r}; "
                      "jobkit stores jobs in SQLite or PostgreSQL: set JOBKIT['storage']")


def _postgres_url(database: Mapping[str, Any]) -> str:
    """``postgresql://user:password@host:port/name?options``: a socket folder as the host too.

    Without ``HOST``, ``localhost``: an empty host would make the URL's ``//`` vanish.
    """
    def part(key: str) -> str:
        return quote(str(database.get(key) or ""), safe="")

    user = part("USER") + (f":{part('PASSWORD')}" if database.get("PASSWORD") else "")
    netloc = (f"{user}@" if user else "") + (part("HOST") or "localhost")
    if database.get("PORT"):
        netloc += f":{part('PORT')}"
    options = {key: value for key, value in database.get("OPTIONS", {}).items()
               if isinstance(value, str) and key != "assume_role"}  # assume_role: Django's own
    query = urlencode(options, quote_via=quote)
    return f"postgresql://{netloc}/{part('NAME')}" + (f"?{query}" if query else "")
