"""Internal: what the dashboard does: cancel, retry, retry with edited params, bulk actions.

Every action is a POST guarded by :meth:`~jobkit.dashboard.gate.Gate.action` (an ``admin``, the
CSRF token or a bearer token); under ``/api/`` it answers JSON, elsewhere it redirects to a page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

from loguru import logger
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from jobkit.dashboard import bulk, edit, filters
from jobkit.dashboard.views import Views, query_string
from jobkit.exceptions import InvalidParameters, JobkitError, JobNotFoundInStorage
from jobkit.records import JobStatus


class Actions(Views):
    """The dashboard's actions, on top of its pages (an action's errors show on the job page)."""

    def cancel(self, request: Request) -> Response:
        """Cancel a pending, retrying or running job."""
        return self._act(request, self.app.cancel_job, "cancelled", "it had already finished")

    def retry(self, request: Request) -> Response:
        """Run a failed or cancelled job again."""
        return self._act(request, self.app.retry_job, "queued again",
                         "only failed or cancelled jobs can be retried")

    def retry_edited(self, request: Request) -> Response:
        """Run a failed or cancelled job again as a new job with edited params.

        The params are validated as for any enqueue; when they do not pass, the errors show
        beside the fields."""
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
        return RedirectResponse("/jobs?" + query_string({**shown, "after": ""}),
                                status_code=303)

    def pause_queue(self, request: Request) -> Response:
        """Pause a queue for every worker."""
        return self._queue_act(request, paused=True)

    def resume_queue(self, request: Request) -> Response:
        """Resume a paused queue."""
        return self._queue_act(request, paused=False)

    def _queue_act(self, request: Request, *, paused: bool) -> Response:
        act = self.app.pause_queue if paused else self.app.resume_queue
        return self.pause_act(request, "queue", act, paused=paused, refused=(ValueError, 400))

    def pause_act(self, request: Request, what: str, act: Callable[[str], bool], *,
                  paused: bool, refused: tuple[type[Exception], int]) -> Response:
        """Pause or resume the queue or schedule (``what``) the path names, with ``act``.

        Under ``/api/`` the answer is ``{what: name, "paused", "changed"}``, elsewhere a
        redirect to its page with a flash; ``refused`` is the error ``act`` raises for a name it
        does not take, and the status to answer it with."""
        name = request.path_params["name"]
        try:
            changed = act(name)
        except refused[0] as exc:
            raise HTTPException(refused[1], str(exc)) from None
        verb = "paused" if paused else "resumed"
        logger.info("{what} {name} {verb} from the dashboard", what=what, name=name, verb=verb)
        if request.url.path.startswith("/api/"):
            return JSONResponse({what: name, "paused": paused, "changed": changed})
        if changed:
            request.session["flash"] = f"{what} {name} {verb}"
        else:
            request.session["flash"] = (f"{what} {name} was paused already" if paused
                                        else f"{what} {name} was not paused")
        return RedirectResponse(f"/{what}s", status_code=303)

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

