"""Internal: the dashboard's gate: who is asking, sign-in and sign-out, and how routes are guarded.

:class:`Gate` wraps each handler: :meth:`~Gate.page` sends strangers to the sign-in page,
:meth:`~Gate.api` answers them 401, :meth:`~Gate.action` guards every POST (role, content type,
CSRF token) and reads its body. The pages (:mod:`.views`) and actions (:mod:`.actions`) build on
it; :mod:`.web` puts them together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from loguru import logger
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from jobkit.app import JobKit
from jobkit.dashboard import sessions, times
from jobkit.dashboard.limits import MAX_BODY, TooDeep, has_body, load_json
from jobkit.dashboard.proxies import throttle_key
from jobkit.dashboard.security import (
    Access,
    Role,
    Throttle,
    new_csrf_token,
    same_token,
)
from jobkit.exceptions import StorageError

HERE = Path(__file__).parent

Handler = Callable[[Request], Response]
AsyncHandler = Callable[[Request], Awaitable[Response]]


class Gate:
    """Who is asking and what they may do, for one app and one access policy."""

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
        """The caller's role, or ``None`` for a stranger.

        The caller's role: from a bearer token, the session (one read of the store: was it
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
        """A POST handler, guarded: the caller's role, the body's type and the CSRF token.

        A POST: by a signed-in ``admin`` (any role when ``admin`` is false), with the CSRF
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


def _client(request: Request) -> str:
    """Who failed sign-ins count against: the address a request came from.

    Who failed sign-ins count against: the address a request came from (behind a trusted
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

