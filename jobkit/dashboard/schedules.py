"""Internal: the dashboard's schedules: their page, each one's runs, pause and resume, the API.

The schedules are those of ``schedules:`` in jobs.yaml, with their state in the store (paused,
last run, the job it started); a store without the ``schedules`` capability keeps none, and
the page says so. Pause and resume are actions like the queues' (an ``admin``, the CSRF token
or a bearer token).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobkit.dashboard.actions import Actions
from jobkit.dashboard.views import job_json, keeps_of
from jobkit.exceptions import UnknownSchedule
from jobkit.schedule_report import schedule_json
from jobkit.storage.capabilities import supports

#: The runs a schedule's page lists, newest first.
RUNS_SHOWN = 20


class Schedules(Actions):
    """The schedules' pages, API and actions, on top of the rest of the dashboard."""

    def schedules(self, request: Request) -> Response:
        """Every schedule: what it runs and when, paused or not, its last and next run."""
        flash = request.session.pop("flash", None)
        return self.render(request, "schedules.html", flash=flash, **self._schedules())

    def _schedules(self) -> dict[str, Any]:
        storage = self.app.storage
        found = self.app.schedules() if supports(storage, "schedules") else []
        return {"keeps": keeps_of(storage),
                "schedules": [schedule_json(view) for view in found]}

    def schedule(self, request: Request) -> Response:
        """One schedule: its settings and the jobs its latest ticks started."""
        flash = request.session.pop("flash", None)
        return self.render(request, "schedule.html", flash=flash, **self._schedule(request))

    def _schedule(self, request: Request) -> dict[str, Any]:
        name = request.path_params["name"]
        storage = self.app.storage
        if not supports(storage, "schedules"):
            raise HTTPException(404, "this job store keeps no schedules")
        views = self.app.schedules()
        found = [view for view in views if view.schedule.name == name]
        if not found:
            known = [view.schedule.name for view in views]
            raise HTTPException(404, str(UnknownSchedule(name, known)))
        runs = self.app.schedule_runs(name, limit=RUNS_SHOWN)
        return {"keeps": keeps_of(storage), "schedule": schedule_json(found[0]),
                "runs": [job_json(record) for record in runs]}

    def api_schedules(self, request: Request) -> Response:
        """``GET /api/schedules``."""
        return JSONResponse(self._schedules())

    def api_schedule(self, request: Request) -> Response:
        """``GET /api/schedules/{name}``: the schedule and its runs."""
        found = self._schedule(request)
        return JSONResponse({key: found[key] for key in ("schedule", "runs")})

    def pause_schedule(self, request: Request) -> Response:
        """Pause a schedule for every worker."""
        return self._schedule_act(request, paused=True)

    def resume_schedule(self, request: Request) -> Response:
        """Resume a paused schedule."""
        return self._schedule_act(request, paused=False)

    def _schedule_act(self, request: Request, *, paused: bool) -> Response:
        act = self.app.pause_schedule if paused else self.app.resume_schedule
        return self.pause_act(request, "schedule", act, paused=paused,
                              refused=(UnknownSchedule, 404))
