"""The admin API for dead letters, on both stacks: list (paginated, one organization's),
retry (re-queues the job, which then runs), and nothing for non-admins or other orgs."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import BaseModel

from jobs.conftest import delete_streams, wait_until
from media_service.auth.principal import Role
from media_service.db.uow import unit_of_work
from media_service.events import DeliveryPolicy
from media_service.jobs import JobContext, JobRegistry, Worker, enqueue, job

from conftest import Stack

ORG, OTHER = "org_dlq", "org_dlq_other"
URL = "/api/v1/media/admin/dead-letters"
POLICY = DeliveryPolicy(
    max_deliver=2, backoff=(0.1,), handler_timeout=1.0, ack_margin=0.5, max_in_flight=8
)


class Payload(BaseModel):
    n: int
    organization_id: str


@pytest.fixture
async def fresh_streams(stack: Stack) -> None:
    """No jobs or consumers left on NATS by earlier tests (before the app starts)."""
    if stack.settings.events_url.startswith("nats"):
        await delete_streams(stack.settings.events_url)


async def test_admin_lists_and_retries_dead_letters(
    stack: Stack, fresh_streams: None, client: httpx.AsyncClient
) -> None:
    failing = {"on": True}
    runs: list[tuple[str, int]] = []

    @job("test.admin", Payload)
    async def flaky(ctx: JobContext, payload: Payload) -> None:
        runs.append((ctx.job_id, payload.n))
        if failing["on"]:
            raise RuntimeError(f"poisoned {payload.n}")

    await Worker(stack.state.bus, stack.state.sessions, JobRegistry([flaky]), policy=POLICY).start()
    async with unit_of_work(stack.state.sessions) as session:
        first = await enqueue(session, "test.admin", Payload(n=1, organization_id=ORG))
        second = await enqueue(session, "test.admin", Payload(n=2, organization_id=ORG))
        other = await enqueue(session, "test.admin", Payload(n=3, organization_id=OTHER))

    admin = stack.auth("admin-1", ORG, Role.ADMIN)

    async def letters(headers: dict[str, str], **params: object) -> httpx.Response:
        return await client.get(URL, headers=headers, params=params)

    async def all_dead() -> bool:
        mine = (await letters(admin)).json()["items"]
        theirs = (await letters(stack.auth("a", OTHER, Role.ADMIN))).json()["items"]
        return len(mine) == 2 and len(theirs) == 1

    await wait_until(all_dead, timeout=20)

    # Newest first, one page at a time, only this organization's.
    page1 = (await letters(admin, limit=1)).json()
    page2 = (await letters(admin, limit=1, cursor=page1["next_cursor"])).json()
    assert page2["next_cursor"] is None
    items = page1["items"] + page2["items"]
    assert {item["msg_id"] for item in items} == {first, second}
    assert items[0]["id"] > items[1]["id"]
    letter = next(item for item in items if item["msg_id"] == first)
    assert letter["subject"] == "jobs.test.admin"
    assert letter["attempts"] == POLICY.max_deliver
    assert letter["error"] == "RuntimeError: poisoned 1"
    assert letter["organization_id"] == ORG
    assert letter["message"]["payload"] == {"n": 1, "organization_id": ORG}

    member = stack.auth("m-1", ORG, Role.MEMBER)
    assert (await letters(member)).status_code == 403
    assert (await letters(admin, cursor="../../etc")).status_code == 422

    retry = f"{URL}/{letter['id']}/retry"
    assert (await client.post(retry, headers=member)).status_code == 404
    other_admin = stack.auth("a", OTHER, Role.ADMIN)
    assert (await client.post(retry, headers=other_admin)).status_code == 404
    assert (await client.post(f"{URL}/dlq_nope/retry", headers=admin)).status_code == 404

    failing["on"] = False
    before = len(runs)
    response = await client.post(retry, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["retried_at"] is not None
    await wait_until(lambda: len(runs) > before, timeout=15)
    await asyncio.sleep(POLICY.ack_wait)
    assert runs[before:] == [(first, 1)]  # the same job, run once more, and done

    assert (await client.post(retry, headers=admin)).status_code == 409
    remaining = (await letters(admin)).json()["items"]
    assert [item["msg_id"] for item in remaining] == [second]
    assert other not in {item["msg_id"] for item in remaining}
