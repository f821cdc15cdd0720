"""Internal: ``jobkit dashboard``: check the extra and the address, then serve with uvicorn."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from loguru import logger

from jobkit.exceptions import JobkitError

if TYPE_CHECKING:
    from jobkit.app import JobKit

#: The modules of the ``dashboard`` extra.
NEEDED = ("starlette", "jinja2", "uvicorn", "itsdangerous", "multipart")


def missing_modules() -> list[str]:
    """The modules of the ``dashboard`` extra that are not installed."""
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def keeps_sign_outs(app: JobKit) -> bool:
    """Whether ``app``'s store keeps revoked sessions itself.

    Whether ``app``'s store keeps revoked sessions itself (shared by every process that
    opens it): the optional capability ``sessions``; without it they are kept in this process."""
    from jobkit.storage.capabilities import supports

    return supports(app.storage, "sessions")


def serve(app: JobKit, host: str, port: int) -> None:
    """Serve the dashboard of ``app`` on ``host:port`` until interrupted.

    Raises ``JobkitError`` when the extra is missing, ``ConfigError`` when sign-in is required
    but no password is set, or when asked to listen beyond the loopback without sign-in.
    """
    missing = missing_modules()
    if missing:
        raise JobkitError(
            f"jobkit dashboard needs the dashboard extra ({', '.join(missing)} missing): "
            "pip install 'jobkit[dashboard]'"
        )
    import uvicorn

    from jobkit.dashboard.security import Access, check_listen
    from jobkit.dashboard.web import create_app

    access = Access.from_settings(app.config.dashboard)
    check_listen(host, access)
    if access.required and not keeps_sign_outs(app):
        logger.warning("dashboard: the {scheme} store keeps no sign-outs (its backend has no "
                       "revoke_session): a sign-out ends the session in this dashboard "
                       "process only", scheme=type(app.storage).scheme)
    shown = f"[{host}]" if ":" in host else host
    logger.info(
        "dashboard on http://{host}:{port}/ ({auth})",
        host=shown,
        port=port,
        auth="sign-in required" if access.required else "no sign-in: loopback only",
    )
    # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1 (its default),
    # so anyone on the machine could escape the sign-in lockout; the app reads the header
    # itself, from dashboard.trusted_proxies only (jobkit/dashboard/proxies.py)
    uvicorn.run(create_app(app, access=access), host=host, port=port, log_level="warning",
                lifespan="off", proxy_headers=False)
