"""Internal: the dashboard's workflow page, its JSON API and the cancel action.

The page draws the workflow's graph as an SVG (:mod:`.graph`); its script reads
``/api/workflows/{id}`` every two seconds and recolours each step as its status changes.
Cancel is an action like the others (an ``admin``, the CSRF token or a bearer token). A store
without the ``workflows`` capability keeps none: every workflow is a 404.
"""

from __future__ import annotations

from urllib.parse import quote

from loguru import logger
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from jobkit.dashboard import graph
from jobkit.dashboard.schedules import Schedules
from jobkit.exceptions import WorkflowNotFound
from jobkit.records import WorkflowRecord
from jobkit.storage.capabilities import supports
from jobkit.workflow_report import workflow_json


class Workflows(Schedules):
    """The workflow page, API and cancel action, on top of the rest of the dashboard."""

    def workflow(self, request: Request) -> Response:
        """One workflow: its graph, each step coloured by its status and a link to its job."""
        record = self._workflow_record(request)
        flash = request.session.pop("flash", None)
        steps = record.steps
        return self.render(
            request, "workflow.html", flash=flash, workflow=workflow_json(record),
            graph=graph.draw(steps, f"workflow {record.id}: {len(steps)} steps"),
            max_row=graph.MAX_ROW, max_drawn=graph.MAX_DRAWN,
        )

    def _workflow_record(self, request: Request) -> WorkflowRecord:
        workflow_id = request.path_params["workflow_id"]
        if not supports(self.app.storage, "workflows"):
            raise HTTPException(404, "this job store keeps no workflows")
        try:
            return self.app.get_workflow(workflow_id)
        except WorkflowNotFound as exc:
            raise HTTPException(404, str(exc)) from None

    def api_workflow(self, request: Request) -> Response:
        """``GET /api/workflows/{id}``: the workflow and each step's status.

        With ``?view=statuses``, only ``id``, ``finished``, ``counts`` and ``statuses`` (each
        step's status by job id): what the page reads every two seconds, a tenth of the size.
        """
        view = request.query_params.get("view")
        if view not in (None, "statuses"):
            raise HTTPException(400, "view must be statuses, or left out")
        found = workflow_json(self._workflow_record(request))
        if view == "statuses":
            found["statuses"] = {step["job_id"]: step["status"] for step in found.pop("steps")}
            del found["created_at"]
        return JSONResponse(found)

    def cancel_workflow(self, request: Request) -> Response:
        """Cancel every step of the workflow that has not ended."""
        workflow_id = self._workflow_record(request).id
        cancelled = self.app.cancel_workflow(workflow_id)
        logger.info("workflow {workflow_id} cancelled from the dashboard: {n} step(s)",
                    workflow_id=workflow_id, n=cancelled)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"workflow_id": workflow_id, "cancelled": cancelled})
        request.session["flash"] = (f"workflow {workflow_id}: {cancelled} step(s) cancelled"
                                    if cancelled else
                                    f"workflow {workflow_id} had no step left to cancel")
        return RedirectResponse(f"/workflows/{quote(workflow_id, safe='')}", status_code=303)
