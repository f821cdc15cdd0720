"""Enqueue inside Django's ``transaction.atomic()``: run by test_transactions.py in a process.

Django's settings are global to a process, configured once: each run gets a process of its own.
Arguments: the jobkit storage URL and the Django ``DATABASES['default']`` as JSON. Prints the
tags of the jobs stored, as JSON.
"""

from __future__ import annotations

import json
import sys

import django
from django.conf import settings

storage, database = sys.argv[1], json.loads(sys.argv[2])
settings.configure(DATABASES={"default": database}, USE_TZ=True)
django.setup()

from django.db import connection, transaction  # noqa: E402 - after setup

from jobkit import JobKit  # noqa: E402
from jobkit.config import Config  # noqa: E402

app = JobKit(Config.from_dict({
    "storage": storage,
    "jobs": {"Recorder": {"class": "sample_jobs:Recorder"}},
}), load_entrypoints=False)


class RolledBack(Exception):
    """Raised inside ``atomic()`` to roll its transaction back."""


def enqueue(tag: str) -> str:
    return app.run_background_job("Recorder", "record", {"ledger": "-", "tag": tag},
                                  connection=connection)


try:
    with transaction.atomic():
        enqueue("rolled back")
        raise RolledBack
except RolledBack:
    pass
with transaction.atomic():
    enqueue("committed")
    assert app.list_jobs() == []  # jobkit's own connections do not see it before the commit
print(json.dumps([job.params["tag"] for job in app.list_jobs()]))
app.close()
