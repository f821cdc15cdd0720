"""A FastAPI app that hands reports to jobkit and waits for them without blocking its loop.

Run it in this folder with ``uvicorn main:api`` beside ``jobkit worker`` (see README.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

from jobkit import InvalidParameters, JobKit, JobNotFoundInStorage, JobRecord, JobWaitTimeout


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    """Open the jobkit app for the server's life: ``./jobs.yaml``, or ``JOBKIT_CONFIG``'s file."""
    with JobKit.from_config() as app:  # closed at shutdown: ends the waits going on
        api.state.jobkit = app
        yield


api = FastAPI(title="reports", lifespan=lifespan)


def jobkit_app(request: Request) -> JobKit:
    """The jobkit app the lifespan opened."""
    app: JobKit = request.app.state.jobkit
    return app


App = Annotated[JobKit, Depends(jobkit_app)]


class ReportRequest(BaseModel):
    """What ``POST /reports`` takes."""

    title: str
    seconds: float = 0.0


def report_view(record: JobRecord) -> dict[str, Any]:
    """The JSON a client sees of a report's job."""
    return {"id": record.id, "status": record.status.value, "result": record.result,
            "error": record.error, "progress": record.progress}


@api.post("/reports", status_code=202)
async def create_report(body: ReportRequest, app: App) -> dict[str, str]:
    """Enqueue a report; its job id at once (202), the worker builds it."""
    try:
        job_id = await app.arun_background_job("Report", "build", body.model_dump())
    except InvalidParameters as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"id": job_id}


@api.get("/reports/{job_id}")
async def get_report(job_id: str, app: App) -> dict[str, Any]:
    """A report's job as it is now: queued, running, completed (with its result), failed ..."""
    try:
        return report_view(await app.aget_job(job_id))
    except JobNotFoundInStorage as exc:
        raise HTTPException(404, f"no report {job_id}") from exc


@api.post("/reports/{job_id}/wait")
async def wait_report(job_id: str, app: App, timeout: float = 10.0) -> dict[str, Any]:
    """The report once its job has ended; 504 if it has not within ``timeout`` seconds."""
    try:
        return report_view(await app.await_job(job_id, timeout=timeout))
    except JobNotFoundInStorage as exc:
        raise HTTPException(404, f"no report {job_id}") from exc
    except JobWaitTimeout as exc:  # only the wait ends: the job goes on
        raise HTTPException(504, f"report {job_id} not ready after {timeout} s") from exc


@api.delete("/reports/{job_id}")
async def cancel_report(job_id: str, app: App) -> dict[str, bool]:
    """Cancel a report: ``cancelled`` is false if its job had already ended."""
    try:
        return {"cancelled": await app.acancel_job(job_id)}
    except JobNotFoundInStorage as exc:
        raise HTTPException(404, f"no report {job_id}") from exc
