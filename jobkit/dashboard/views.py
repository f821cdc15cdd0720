"""Internal: what the dashboard shows: the pages and the JSON API that reads the same data.

Each view builds its data once (``_overview``, ``_jobs``, ``_job``, ``_registry``): the page
renders it with a template, the API route returns it as JSON. Params are shown with their
secrets masked.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import attrs
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobkit.dashboard import chart, edit, filters, times
from jobkit.dashboard.gate import Gate
from jobkit.exceptions import JobNotFoundInStorage
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
from jobkit.workflow_report import workflow_links

#: A worker process beaten within this many seconds is alive (its supervisor beats every second).
ALIVE_SECONDS = 10.0


class Views(Gate):
    """The dashboard's pages and its read-only JSON API."""

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
            "keeps": keeps_of(storage),
            "counts": counts,
            "running": [job_json(job) for job in running],
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
            "keeps": keeps_of(storage),
            "query": shown,
            "jobs": [job_json(record) for record in page.jobs],
            "total": total.n,
            "total_text": str(total),
            "complete": page.complete,
            "next": query_string({**shown, "after": page.next}) if page.next else None,
            "first": query_string({**shown, "after": ""}) if query.after else None,
            "query_string": query_string(shown),
            "statuses": [status.value for status in JobStatus],
            "names": sorted(spec.name for spec in self.app.registry),
            "sorts": SORTS,
        }

    def job(self, request: Request) -> Response:
        """One job's page.

        One job: its record, params (secrets masked), result, progress and attempts; for a
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
        links = workflow_links(self.app.storage, record.id, record.status is JobStatus.BLOCKED)
        response = self.render(request, "job.html", fields=fields,
                               form_error=(errors or {}).get(""), **links, **found)
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
            "keeps": keeps_of(self.app.storage),
            "job": job_json(record),
            "waiting": self.app.why_waiting(record.id),
            "attempts": [{**_attempt_json(a), **times.attempt_spans(record, a)}
                         for a in attempts],
            "logs": [{"attempt": line.attempt, "at": _time(line.at), "level": line.level,
                      "message": line.message} for line in lines],
        }

    def queues(self, request: Request) -> Response:
        """The queues: paused or not, jobs waiting and running, done in the last minute."""
        flash = request.session.pop("flash", None)
        return self.render(request, "queues.html", flash=flash, **self._queues())

    def _queues(self) -> dict[str, Any]:
        storage = self.app.storage
        found = self.app.queues() if supports(storage, "flow") else []
        limits = self.app.queue_limits()
        return {"keeps": keeps_of(storage),
                "queues": [{**attrs.asdict(queue), "limits": limits.get(queue.name)}
                           for queue in found]}

    def registry(self, request: Request) -> Response:
        """Every registered job, its approved methods and signatures, its settings' sources."""
        return self.render(request, "registry.html", jobs=self._registry())

    def _registry(self) -> list[dict[str, Any]]:
        found = []
        for spec in sorted(self.app.registry, key=lambda spec: spec.name):
            resolved = self.app.job_settings(spec.name)
            values = attrs.asdict(resolved.settings)  # a limit as a mapping, as in `jobkit jobs`
            found.append({
                "name": spec.name,
                "class": spec.import_path,
                "methods": [describe(spec.cls, method) for method in spec.methods],
                "settings": [
                    {"key": key, "value": values[key],
                     "source": resolved.sources[key]}
                    for key in sorted(resolved.sources)
                ],
            })
        return found

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

    def api_queues(self, request: Request) -> Response:
        """``GET /api/queues``."""
        return JSONResponse(self._queues())

    def api_registry(self, request: Request) -> Response:
        """``GET /api/registry``."""
        return JSONResponse({"jobs": self._registry()})



def query_string(query: dict[str, Any]) -> str:
    """The list's query string for these values (empty ones left out, statuses repeated)."""
    return urlencode([(key, item) for key, value in query.items() if value
                      for item in (value if isinstance(value, list) else [value])])


def _time(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def keeps_of(storage: Storage) -> dict[str, bool]:
    """Which optional capabilities the store has.

    Which optional capabilities the store has (:mod:`jobkit.storage.capabilities`): the
    pages say what a store without them does not keep."""
    return {name: supports(storage, name) for name in OPTIONAL_CAPABILITIES}

def job_json(record: JobRecord) -> dict[str, Any]:
    """A job as the pages and the API show it: params with their secrets masked."""
    return {
        "id": record.id,
        "name": record.name,
        "method": record.method,
        "queue": record.queue,
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


