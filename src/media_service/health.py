"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from media_service.deps import StateDep
from media_service.doctor import CheckResult, run_checks

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(state: StateDep) -> JSONResponse:
    """Every backend answers and the schema is at the newest migration (warnings, such as
    a bus that does not sync to disk, are reported but do not make it unready)."""
    results = await run_checks(state)
    healthy = all(result.ok for result in results)
    body = {
        "status": "ok" if healthy else "unavailable",
        "checks": {r.name: _check(r) for r in results},
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


def _check(result: CheckResult) -> dict[str, object]:
    body: dict[str, object] = {"ok": result.ok, "detail": result.detail}
    if result.warning:  # only then: the usual shape stays {"ok", "detail"}
        body["warning"] = True
    return body
