"""The dashboard's ASGI app: pages, actions and the JSON API over one :class:`~jobkit.JobKit`.

GET never changes anything; every POST needs a signed-in ``admin`` and the session's CSRF token
(or an API bearer token). Handlers are plain functions: Starlette runs them in its thread pool,
where the app's (blocking) store is safe to use. Paths are matched exactly: a trailing slash is
not redirected (Starlette would redirect to the host the request names).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from loguru import logger
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from jobkit.app import JobKit
from jobkit.dashboard import bulk, chart, edit, filters, sessions, times
from jobkit.dashboard.limits import MAX_BODY, BodyLimit, TooDeep, has_body, load_json
from jobkit.dashboard.proxies import ForwardedClient, TrustedProxies, throttle_key
from jobkit.dashboard.security import (
    Access,
    ASGIApp,
    LoopbackOnly,
    Role,
    SecurityHeaders,
    Throttle,
    new_csrf_token,
    same_token,
)
from jobkit.exceptions import InvalidParameters, JobkitError, JobNotFoundInStorage, StorageError
from jobkit.factory import describe
from jobkit.masking import mask_secrets
from jobkit.records import Attempt, JobRecord, JobStatus
from jobkit.storage import capabilities
from jobkit.storage.base import Storage
from jobkit.storage.capabilities import (
    OPTIONAL_CAPABILITIES,
    job_logs_of,
    supports,
    throughput_of,
    workers_of,
)
from jobkit.storage.search import SORTS

HERE = Path(__file__).parent

#: A worker process beaten within this many seconds is alive (its supervisor beats every second).
ALIVE_SECONDS = 10.0

Handler = Callable[[Request], Response]
AsyncHandler = Callable[[Request], Awaitable[Response]]


class Dashboard:
    """The pages and API routes, bound to one app and one access policy."""

    def __init__(self, app: JobKit, access: Access) -> None:
        self.app = app
        self.access = access
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every value shown is escaped: params and errors are user data
            undefined=jinja2.StrictUndefined,
        )
        env.globals.update(times.TEMPLATE_GLOBALS)
        self.templates = Jinja2Templates(env=env)
        #: Failed sign-ins by client address.
        self.throttle = Throttle()

    # -- who is asking ------------------------------------------------------------------------

    def role(self, request: Request) -> Role | None:
        """The caller's role: from a bearer token, the session (one read of the store: was it
        signed out?), or everyone is admin without sign-in."""
        if not self.access.required:
            return Role.ADMIN
        header = request.headers.get("authorization", "")
        if _bearer(request):
            client = _client(request)
            if self.throttle.blocked(client):
                return None
            role = self.access.role_of_token(header[len("bearer "):].strip())
            if role is None:
                self.throttle.failed(client)
            return role
        return sessions.role_of(request.session, self.access, self.app.storage)

    def csrf(self, request: Request) -> str:
        """The session's CSRF token (made on first use)."""
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = request.session["csrf"] = new_csrf_token()
        return token

    def page(self, handler: Handler) -> Handler:
        """A page for signed-in users: others are sent to the sign-in page."""

        def run(request: Request) -> Response:
            role = self.role(request)
            if role is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            request.state.role = role
            return handler(request)

        return run

    def api(self, handler: Handler) -> Handler:
        """A JSON API route: 401 without credentials."""

        def run(request: Request) -> Response:
            role = self.role(request)
            if role is None:
                return JSONResponse({"error": "sign-in required"}, status_code=401,
                                    headers={"www-authenticate": "Bearer"})
            request.state.role = role
            return handler(request)

        return run

    def action(self, handler: Handler, *, form: bool, admin: bool = True) -> AsyncHandler:
        """A POST: by a signed-in ``admin`` (any role when ``admin`` is false), with the CSRF
        token unless the caller signed in with a bearer token (no ambient credential a forged
        form could ride on; without sign-in, a bearer header is no credential at all)."""

        async def run(request: Request) -> Response:
            # the role first, off the event loop (a bearer token's scrypt check takes 50 ms),
            # and before any body is read: strangers and viewers get nothing parsed
            role = await run_in_threadpool(self.role, request)
            if role is None:
                if form:
                    return RedirectResponse("/login", status_code=303)
                return JSONResponse({"error": "sign-in required"}, status_code=401)
            if admin and role is not Role.ADMIN:
                return self._refuse(request, 403, "this sign-in may only look", form)
            bearer = self.access.required and _bearer(request)
            kind = request.headers.get("content-type", "").split(";")[0].strip()
            if not form and has_body(request.headers) and kind != "application/json":
                # a cross-site page can send a form or text/plain without asking first; a JSON
                # request needs a CORS preflight, which this app never grants
                return self._refuse(request, 415, "send the body as application/json", form)
            # the body is read here, where awaiting is possible; handlers find it in state
            # (BodyLimit stops the reading past MAX_BODY, however the body is sent)
            request.state.form = {}
            request.state.form_lists = {}
            request.state.body = {}
            if form:
                posted = await request.form(max_files=0, max_fields=200,
                                            max_part_size=MAX_BODY)
                request.state.form = {k: v for k, v in posted.items() if isinstance(v, str)}
                request.state.form_lists = {
                    k: [v for v in posted.getlist(k) if isinstance(v, str)] for k in posted
                }
            else:
                raw = await request.body()
                try:
                    request.state.body = load_json(raw, "the body") if raw.strip() else {}
                except TooDeep as exc:
                    return self._refuse(request, 400, str(exc), form)
                except ValueError:
                    return self._refuse(request, 400, "the body is not JSON", form)
            # the session's token on every POST that rides on the cookie, sign-in or not (a
            # page on another site can make the browser post to 127.0.0.1 too)
            if not bearer:
                given = request.headers.get("x-csrf-token") or request.state.form.get("csrf")
                if not same_token(given, request.session.get("csrf")):
                    return self._refuse(request, 403, "missing or wrong CSRF token", form)
            request.state.role = role
            return await run_in_threadpool(handler, request)

        return run

    def _refuse(self, request: Request, status: int, why: str, form: bool) -> Response:
        if form:
            return Response(why, status_code=status, media_type="text/plain")
        return JSONResponse({"error": why}, status_code=status)

    def render(self, request: Request, name: str, **context: Any) -> Response:
        """A page: the template with the caller's role and CSRF token."""
        context.update(
            role=str(request.state.role),
            csrf=self.csrf(request),
            signed_in=self.access.required,
        )
        return self.templates.TemplateResponse(request, name, context)

    # -- sign-in ------------------------------------------------------------------------------

    def login_page(self, request: Request) -> Response:
        """The sign-in form."""
        request.state.role = ""
        return self._login(request, None)

    def _login(self, request: Request, error: str | None, status: int = 200,
               target: Any = None) -> Response:
        return self.templates.TemplateResponse(
            request,
            "login.html",
            {"csrf": self.csrf(request), "error": error, "next": _safe_next(request, target),
             "role": "", "signed_in": False},
            status_code=status,
        )

    async def login(self, request: Request) -> Response:
        """Check the password; start a session."""
        form = await request.form(max_files=0, max_fields=20, max_part_size=MAX_BODY)
        if not same_token(str(form.get("csrf", "")), request.session.get("csrf")):
            return Response("missing or wrong CSRF token", status_code=403)
        client = _client(request)
        if self.throttle.blocked(client):
            return self._login(request, "too many failed sign-ins: wait a minute", status=429,
                               target=form.get("next"))
        role = await run_in_threadpool(self.access.role_of, str(form.get("password", "")))
        if role is None:  # the form again, still going where it was asked to go
            self.throttle.failed(client)
            return self._login(request, "wrong password", status=401, target=form.get("next"))
        sessions.start(request.session, self.access, role, self.session_seconds)
        return RedirectResponse(_safe_next(request, form.get("next")), status_code=303)

    session_seconds: float = 8 * 3600.0

    def logout(self, request: Request) -> Response:
        """End the session: in the store (a copy of the cookie is refused too), then here."""
        try:
            sessions.end(request.session, self.app.storage)
        except StorageError as exc:
            logger.error("dashboard sign-out: the session could not be ended on the server: "
                         "{error}", error=str(exc))
            return Response(f"signed out in this browser only: the job store could not record "
                            f"the end of the session ({exc}); a copy of the cookie still works "
                            "until it expires, unless the password is changed",
                            status_code=503, media_type="text/plain")
        return RedirectResponse("/login", status_code=303)

    # -- pages --------------------------------------------------------------------------------

    def overview(self, request: Request) -> Response:
        """Counts by status and the jobs running now."""
        return self.render(request, "overview.html", **self._overview())

    def _overview(self) -> dict[str, Any]:
        storage = self.app.storage
        counts = {status.value: storage.count(status=status) for status in JobStatus}
        running = storage.list(status=JobStatus.RUNNING, limit=100)
        now = storage.now()
        oldest = capabilities.oldest_waiting(storage)
        by_worker = {job.worker_id: job for job in running}
        workers = []
        for worker in workers_of(storage).list_workers():
            job = by_worker.get(worker.worker_id)
            silent = (now - worker.last_seen_at).total_seconds()
            workers.append({
                "worker_id": worker.worker_id,
                "hostname": worker.hostname,
                "pid": worker.pid,
                "supervisor_pid": worker.supervisor_pid,
                "started_at": _time(worker.started_at),
                "last_seen_at": _time(worker.last_seen_at),
                "alive": silent <= ALIVE_SECONDS,
                "job": None if job is None else {"id": job.id, "name": job.name,
                                                 "method": job.method},
            })
        counted = throughput_of(storage).throughput(now - timedelta(days=1))
        return {
            "keeps": _keeps(storage),
            "counts": counts,
            "running": [_job_json(job) for job in running],
            "workers": workers,
            "oldest_wait": None if oldest is None else max(0.0, (now - oldest).total_seconds()),
            "throughput": {
                span: [{"start": _time(bar.start), "succeeded": bar.succeeded,
                        "failed": bar.failed} for bar in chart.bars(counted, span, now)]
                for span in chart.SPANS
            },
        }

    def chart_svg(self, request: Request) -> Response:
        """``GET /charts/{span}.svg``: the throughput of the last hour or day."""
        span = request.path_params["span"]
        if span not in chart.SPANS:
            raise HTTPException(404, f"no chart {span!r} (hour, day)")
        storage = self.app.storage
        now = storage.now()
        found = chart.bars(throughput_of(storage).throughput(now - timedelta(days=1)), span, now)
        return Response(chart.svg(found, span), media_type="image/svg+xml")

    def jobs(self, request: Request) -> Response:
        """The jobs list, filtered and paginated."""
        flash = request.session.pop("flash", None)
        return self.render(request, "jobs.html", flash=flash, **self._jobs(request))

    def _jobs(self, request: Request) -> dict[str, Any]:
        try:
            query, shown = filters.parse(
                request.query_params,
                {key: request.query_params.getlist(key) for key in request.query_params},
            )
        except filters.BadFilter as exc:
            raise HTTPException(400, str(exc)) from None
        storage = self.app.storage
        page = capabilities.search(storage, query)
        total = capabilities.count_matching(storage, query, cap=filters.COUNT_CAP,
                                            budget=filters.COUNT_BUDGET)
        return {
            "keeps": _keeps(storage),
            "query": shown,
            "jobs": [_job_json(record) for record in page.jobs],
            "total": total.n,
            "total_text": str(total),
            "complete": page.complete,
            "next": _query_string({**shown, "after": page.next}) if page.next else None,
            "first": _query_string({**shown, "after": ""}) if query.after else None,
            "query_string": _query_string(shown),
            "statuses": [status.value for status in JobStatus],
            "names": sorted(spec.name for spec in self.app.registry),
            "sorts": SORTS,
        }

    def job(self, request: Request) -> Response:
        """One job: its record, params (secrets masked), result, progress and attempts; for a
        failed or cancelled job, the form to retry it with edited params."""
        return self._job_page(request)

    def _job_page(self, request: Request, posted: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None, status: int = 200) -> Response:
        found = self._job(request)
        record = self._record(request)
        fields = []
        if record.name in self.app.registry and record.method in self.app.registry.get(
                record.name).methods:
            fields = edit.fields_of(self.app.registry.get(record.name), record, posted, errors)
        response = self.render(request, "job.html", fields=fields,
                               form_error=(errors or {}).get(""), **found)
        response.status_code = status
        return response

    def _record(self, request: Request) -> JobRecord:
        job_id = request.path_params["job_id"]
        try:
            return self.app.get_job(job_id)
        except JobNotFoundInStorage:
            raise HTTPException(404, f"no job {job_id}") from None

    def _job(self, request: Request) -> dict[str, Any]:
        record = self._record(request)
        attempts = self.app.get_attempts(record.id)
        lines = job_logs_of(self.app.storage).job_logs(record.id)
        return {
            "keeps": _keeps(self.app.storage),
            "job": _job_json(record),
            "attempts": [{**_attempt_json(a), **times.attempt_spans(record, a)}
                         for a in attempts],
            "logs": [{"attempt": line.attempt, "at": _time(line.at), "level": line.level,
                      "message": line.message} for line in lines],
        }

    def registry(self, request: Request) -> Response:
        """Every registered job, its approved methods and signatures, its settings' sources."""
        return self.render(request, "registry.html", jobs=self._registry())

    def _registry(self) -> list[dict[str, Any]]:
        found = []
        for spec in sorted(self.app.registry, key=lambda spec: spec.name):
            resolved = self.app.job_settings(spec.name)
            found.append({
                "name": spec.name,
                "class": spec.import_path,
                "methods": [describe(spec.cls, method) for method in spec.methods],
                "settings": [
                    {"key": key, "value": getattr(resolved.settings, key),
                     "source": resolved.sources[key]}
                    for key in sorted(resolved.sources)
                ],
            })
        return found

    # -- actions ------------------------------------------------------------------------------

    def cancel(self, request: Request) -> Response:
        """Cancel a pending, retrying or running job."""
        return self._act(request, self.app.cancel_job, "cancelled", "it had already finished")

    def retry(self, request: Request) -> Response:
        """Run a failed or cancelled job again."""
        return self._act(request, self.app.retry_job, "queued again",
                         "only failed or cancelled jobs can be retried")

    def retry_edited(self, request: Request) -> Response:
        """Run a failed or cancelled job again as a new job with edited params, validated as
        any enqueue is; the errors shown beside the fields otherwise."""
        record = self._record(request)
        api = request.url.path.startswith("/api/")
        if record.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            message = "only failed or cancelled jobs can be retried"
            if api:
                return JSONResponse({"error": message}, status_code=409)
            return self._job_page(request, errors={"": message}, status=409)
        if api:
            given = request.state.body.get("params") if isinstance(request.state.body, dict) \
                else None
            if not isinstance(given, dict):
                return JSONResponse({"error": 'the body must be {"params": {...}}'},
                                    status_code=400)
            posted = {edit.PREFIX + key: json.dumps(value) for key, value in given.items()}
        else:
            posted = request.state.form
        try:
            params = edit.edited_params(record, posted)
            new_id = self.app.run_background_job(record.name, record.method, params,
                                                 priority=record.priority)
        except InvalidParameters as exc:
            if api:
                return JSONResponse({"error": str(exc), "errors": exc.problems},
                                    status_code=400)
            return self._job_page(request, posted, dict(exc.problems), status=400)
        except JobkitError as exc:  # the job or method is no longer registered
            if api:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return self._job_page(request, posted, {"": str(exc)}, status=400)
        logger.bind(job_id=record.id).info(
            "job {job_id} retried from the dashboard as job {new_id}, with edited params",
            job_id=record.id, new_id=new_id,
        )
        if api:
            return JSONResponse({"job_id": new_id, "retried": record.id})
        return RedirectResponse(f"/jobs/{quote(new_id)}", status_code=303)

    def bulk_action(self, request: Request) -> Response:
        """Cancel or retry every job the list's filters find (see :mod:`bulk`)."""
        api = request.url.path.startswith("/api/")
        if api:
            body = request.state.body if isinstance(request.state.body, dict) else {}
            action = body.get("action")
            given = body.get("filters", {})
            if not isinstance(given, dict):
                return JSONResponse({"error": '"filters" must be an object'}, status_code=400)
            lists = {k: v if isinstance(v, list) else [v] for k, v in given.items()}
            values = {k: str(v[-1]) if v else "" for k, v in lists.items()}
            lists = {k: [str(item) for item in v] for k, v in lists.items()}
        else:
            action = request.state.form.get("action")
            values = {k: v for k, v in request.state.form.items() if k in filters.PARAMS}
            lists = {k: v for k, v in request.state.form_lists.items() if k in filters.PARAMS}
        if not isinstance(action, str) or action not in bulk.APPLIES_TO:
            raise HTTPException(400, "action must be cancel or retry")
        try:
            query, shown = filters.parse(values, lists)
        except filters.BadFilter as exc:
            raise HTTPException(400, str(exc)) from None
        done = bulk.apply(self.app, query, str(action))
        logger.info("dashboard bulk {action}: {message}", action=action, message=done.message())
        if api:
            return JSONResponse({"action": done.action, "matched": done.matched,
                                 "changed": done.changed, "more": done.more,
                                 "message": done.message()})
        request.session["flash"] = done.message()
        return RedirectResponse("/jobs?" + _query_string({**shown, "after": ""}),
                                status_code=303)

    def _act(self, request: Request, act: Callable[[str], bool], done: str, refused: str
             ) -> Response:
        job_id = request.path_params["job_id"]
        try:
            changed = act(job_id)
        except JobNotFoundInStorage:
            raise HTTPException(404, f"no job {job_id}") from None
        if request.url.path.startswith("/api/"):
            return JSONResponse({"job_id": job_id, "changed": changed,
                                 "message": done if changed else refused},
                                status_code=200 if changed else 409)
        return RedirectResponse(f"/jobs/{quote(job_id)}", status_code=303)

    # -- the JSON API -------------------------------------------------------------------------

    def api_overview(self, request: Request) -> Response:
        """``GET /api/overview``."""
        return JSONResponse(self._overview())

    def api_jobs(self, request: Request) -> Response:
        """``GET /api/jobs``."""
        found = self._jobs(request)
        return JSONResponse(
            {key: found[key] for key in ("query", "jobs", "total", "total_text", "complete",
                                         "next")}
        )

    def api_job(self, request: Request) -> Response:
        """``GET /api/jobs/{id}``."""
        return JSONResponse(self._job(request))

    def api_registry(self, request: Request) -> Response:
        """``GET /api/registry``."""
        return JSONResponse({"jobs": self._registry()})


def _client(request: Request) -> str:
    """Who failed sign-ins count against: the address a request came from (behind a trusted
    proxy, the client it forwarded for; an IPv6 address's /64: see
    :mod:`jobkit.dashboard.proxies`)."""
    return throttle_key(request.client.host) if request.client else "?"


def _bearer(request: Request) -> bool:
    """Whether the request carries a bearer token."""
    return request.headers.get("authorization", "").lower().startswith("bearer ")


def _safe_next(request: Request, given: Any = None) -> str:
    """Where to go after signing in: a path on this site only (never ``//host`` or a URL)."""
    target = str(given if given is not None else request.query_params.get("next", "/"))
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _query_string(query: dict[str, Any]) -> str:
    """The list's query string for these values (empty ones left out, statuses repeated)."""
    return urlencode([(key, item) for key, value in query.items() if value
                      for item in (value if isinstance(value, list) else [value])])


def _time(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def _keeps(storage: Storage) -> dict[str, bool]:
    """Which optional capabilities the store has (:mod:`jobkit.storage.capabilities`): the
    pages say what a store without them does not keep."""
    return {name: supports(storage, name) for name in OPTIONAL_CAPABILITIES}

def _job_json(record: JobRecord) -> dict[str, Any]:
    """A job as the pages and the API show it: params with their secrets masked."""
    return {
        "id": record.id,
        "name": record.name,
        "method": record.method,
        "params": mask_secrets(record.params),
        "status": record.status.value,
        "priority": record.priority,
        "attempts": record.attempts,
        "max_attempts": record.max_attempts,
        "result": record.result,
        "error": record.error,
        "created_at": _time(record.created_at),
        "available_at": _time(record.available_at),
        "started_at": _time(record.started_at),
        "finished_at": _time(record.finished_at),
        "worker_id": record.worker_id,
        "progress": record.progress,
        "progress_message": record.progress_message,
        "crashes": record.crashes,
        **times.job_spans(record),
        "unreadable": record.unreadable,  # fields of a row that could not be read
    }


def _attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "worker_id": attempt.worker_id,
        "started_at": _time(attempt.started_at),
        "finished_at": _time(attempt.finished_at),
        "outcome": attempt.outcome.value if attempt.outcome else None,
        "error": attempt.error,
        "traceback": attempt.traceback,
    }


def create_app(app: JobKit, *, access: Access | None = None) -> ASGIApp:
    """The dashboard for ``app``; ``access`` defaults to what ``dashboard:`` in its config
    says (``ConfigError`` when sign-in is required and no password is set)."""
    settings = app.config.dashboard
    access = access or Access.from_settings(settings)
    board = Dashboard(app, access)
    board.session_seconds = settings.session_seconds
    page, api = board.page, board.api
    routes = [
        Route("/login", board.login_page, methods=["GET"]),
        Route("/login", board.login, methods=["POST"]),
        Route("/logout", board.action(board.logout, form=True, admin=False), methods=["POST"]),
        Route("/", page(board.overview), methods=["GET"]),
        Route("/jobs", page(board.jobs), methods=["GET"]),
        Route("/jobs/bulk", board.action(board.bulk_action, form=True), methods=["POST"]),
        Route("/jobs/{job_id}", page(board.job), methods=["GET"]),
        Route("/jobs/{job_id}/cancel", board.action(board.cancel, form=True), methods=["POST"]),
        Route("/jobs/{job_id}/retry", board.action(board.retry, form=True), methods=["POST"]),
        Route("/jobs/{job_id}/retry-edited", board.action(board.retry_edited, form=True),
              methods=["POST"]),
        Route("/registry", page(board.registry), methods=["GET"]),
        Route("/charts/{span}.svg", api(board.chart_svg), methods=["GET"]),
        Route("/api/overview", api(board.api_overview), methods=["GET"]),
        Route("/api/jobs", api(board.api_jobs), methods=["GET"]),
        Route("/api/jobs/bulk", board.action(board.bulk_action, form=False), methods=["POST"]),
        Route("/api/jobs/{job_id}", api(board.api_job), methods=["GET"]),
        Route("/api/jobs/{job_id}/cancel", board.action(board.cancel, form=False),
              methods=["POST"]),
        Route("/api/jobs/{job_id}/retry", board.action(board.retry, form=False),
              methods=["POST"]),
        Route("/api/jobs/{job_id}/retry-edited", board.action(board.retry_edited, form=False),
              methods=["POST"]),
        Route("/api/registry", api(board.api_registry), methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
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
    inner = Starlette(routes=routes, middleware=middleware,
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
