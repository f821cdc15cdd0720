"""Internal: the dashboard's ASGI app: pages, actions and the JSON API over one ``JobKit``.

GET never changes anything; every POST needs a signed-in ``admin`` and the session's CSRF token
(or an API bearer token). Handlers are plain functions: Starlette runs them in its thread pool,
where the app's (blocking) store is safe to use. Paths are matched exactly: a trailing slash is
not redirected (Starlette would redirect to the host the request names).

The handlers are built in layers, one module each: :mod:`.gate` (who is asking, sign-in, the
guards), :mod:`.views` (the pages and the read-only JSON API), :mod:`.actions` (cancel, retry,
bulk, pause and resume), :mod:`.schedules` (the schedules' pages, API and actions),
:mod:`.workflows` (a workflow's page with its graph, its API and cancel);
:class:`Dashboard` routes them and :func:`create_app` wraps them in the middleware.
"""

from __future__ import annotations

import secrets

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from jobkit.app import JobKit
from jobkit.dashboard.gate import HERE
from jobkit.dashboard.limits import BodyLimit
from jobkit.dashboard.proxies import ForwardedClient, TrustedProxies
from jobkit.dashboard.security import (
    Access,
    ASGIApp,
    LoopbackOnly,
    SecurityHeaders,
)
from jobkit.dashboard.workflows import Workflows


class Dashboard(Workflows):
    """The pages, actions and API routes, bound to one app and one access policy."""

    def routes(self) -> list[BaseRoute]:
        """Every route of the dashboard, each behind its guard (:class:`~.gate.Gate`)."""
        page, api, action = self.page, self.api, self.action
        return [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", action(self.logout, form=True, admin=False), methods=["POST"]),
            Route("/", page(self.overview), methods=["GET"]),
            Route("/jobs", page(self.jobs), methods=["GET"]),
            Route("/jobs/bulk", action(self.bulk_action, form=True), methods=["POST"]),
            Route("/jobs/{job_id}", page(self.job), methods=["GET"]),
            Route("/jobs/{job_id}/cancel", action(self.cancel, form=True), methods=["POST"]),
            Route("/jobs/{job_id}/retry", action(self.retry, form=True), methods=["POST"]),
            Route("/jobs/{job_id}/retry-edited", action(self.retry_edited, form=True),
                  methods=["POST"]),
            Route("/registry", page(self.registry), methods=["GET"]),
            Route("/queues", page(self.queues), methods=["GET"]),
            Route("/queues/{name}/pause", action(self.pause_queue, form=True), methods=["POST"]),
            Route("/queues/{name}/resume", action(self.resume_queue, form=True),
                  methods=["POST"]),
            Route("/schedules", page(self.schedules), methods=["GET"]),
            Route("/schedules/{name}", page(self.schedule), methods=["GET"]),
            Route("/schedules/{name}/pause", action(self.pause_schedule, form=True),
                  methods=["POST"]),
            Route("/schedules/{name}/resume", action(self.resume_schedule, form=True),
                  methods=["POST"]),
            Route("/workflows/{workflow_id}", page(self.workflow), methods=["GET"]),
            Route("/workflows/{workflow_id}/cancel", action(self.cancel_workflow, form=True),
                  methods=["POST"]),
            Route("/charts/{span}.svg", api(self.chart_svg), methods=["GET"]),
            Route("/api/overview", api(self.api_overview), methods=["GET"]),
            Route("/api/jobs", api(self.api_jobs), methods=["GET"]),
            Route("/api/jobs/bulk", action(self.bulk_action, form=False), methods=["POST"]),
            Route("/api/jobs/{job_id}", api(self.api_job), methods=["GET"]),
            Route("/api/jobs/{job_id}/cancel", action(self.cancel, form=False),
                  methods=["POST"]),
            Route("/api/jobs/{job_id}/retry", action(self.retry, form=False),
                  methods=["POST"]),
            Route("/api/jobs/{job_id}/retry-edited", action(self.retry_edited, form=False),
                  methods=["POST"]),
            Route("/api/registry", api(self.api_registry), methods=["GET"]),
            Route("/api/queues", api(self.api_queues), methods=["GET"]),
            Route("/api/queues/{name}/pause", action(self.pause_queue, form=False),
                  methods=["POST"]),
            Route("/api/queues/{name}/resume", action(self.resume_queue, form=False),
                  methods=["POST"]),
            Route("/api/schedules", api(self.api_schedules), methods=["GET"]),
            Route("/api/schedules/{name}", api(self.api_schedule), methods=["GET"]),
            Route("/api/schedules/{name}/pause", action(self.pause_schedule, form=False),
                  methods=["POST"]),
            Route("/api/schedules/{name}/resume", action(self.resume_schedule, form=False),
                  methods=["POST"]),
            Route("/api/workflows/{workflow_id}", api(self.api_workflow), methods=["GET"]),
            Route("/api/workflows/{workflow_id}/cancel", action(self.cancel_workflow, form=False),
                  methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]


def create_app(app: JobKit, *, access: Access | None = None) -> ASGIApp:
    """The dashboard for ``app``, as an ASGI app.

    ``access`` defaults to what ``dashboard:`` in its config says (``ConfigError`` when
    sign-in is required and no password is set).
    """
    settings = app.config.dashboard
    access = access or Access.from_settings(settings)
    board = Dashboard(app, access)
    board.session_seconds = settings.session_seconds
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=settings.secret_key or secrets.token_urlsafe(32),
            session_cookie="jobkit_session",
            max_age=max(1, int(settings.session_seconds)),
            same_site="strict",
            https_only=settings.secure_cookie,
        ),
    ]
    inner = Starlette(routes=board.routes(), middleware=middleware,
                      exception_handlers={HTTPException: _http_error})
    inner.router.redirect_slashes = False  # its redirect names the Host the request gave
    served: ASGIApp = inner if access.required else LoopbackOnly(inner)
    served = BodyLimit(served)
    served = ForwardedClient(served, TrustedProxies.of(settings.trusted_proxies))
    # outermost, so that error pages (500 included) carry the headers too
    return SecurityHeaders(served)


async def _http_error(request: Request, exc: Exception) -> Response:
    """A refused request: JSON under ``/api``, a line of text elsewhere."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return Response(exc.detail, status_code=exc.status_code, media_type="text/plain")
