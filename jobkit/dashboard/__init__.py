"""Internal: the dashboard: ``jobkit dashboard`` serves it (Starlette, Jinja2 templates, uvicorn).

It needs the ``dashboard`` extra (``pip install 'jobkit[dashboard]'``). :func:`create_app`
builds the ASGI app from a :class:`~jobkit.JobKit`; nothing here runs at import time.
"""

from __future__ import annotations

from jobkit.dashboard.passwords import hash_password, verify_password

__all__ = ["hash_password", "verify_password"]
