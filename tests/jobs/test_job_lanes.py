"""Lanes: one worker holding several subscriptions of a job type runs its jobs side by
side, a free lane claiming the next job while another still runs one — on the in-process
bus (SQLite) and on NATS."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from pydantic import BaseModel

from jobs.conftest import POLICY, JobsEnv, wait_until
from media_service.db.uow import unit_of_work
from media_service.events.bus import DeliveryPolicy
from media_service.jobs import JobContext, JobHandler, JobRegistry, enqueue, job

ONE_AT_A_TIME = DeliveryPolicy(
    max_deliver=3, backoff=(0.2,), handler_timeout=5.0, ack_margin=0.5, max_in_flight=1
)
PATIENCE = 1.5  # seconds "first" waits for "second" before it gives up (and is retried)


class Step(BaseModel):
    name: str
    organization_id: str = "org_lanes"


@dataclass
class Pair:
    """Job "first" finishes only once job "second" has run."""

    ran: list[str] = field(default_factory=list)
    first_started: asyncio.Event = field(default_factory=asyncio.Event)
    second_ran: asyncio.Event = field(default_factory=asyncio.Event)

    def handler(self, name: str, lanes: int) -> JobHandler[Step]:
        @job(name, Step, policy=ONE_AT_A_TIME, lanes=lanes)
        async def run(ctx: JobContext, payload: Step) -> None:
            if payload.name == "second":
                self.second_ran.set()
            else:
                self.first_started.set()
                try:
                    await asyncio.wait_for(self.second_ran.wait(), PATIENCE)
                except TimeoutError:
                    self.ran.append("gave up")
                    raise
            self.ran.append(payload.name)

        return run


async def run_pair(env: JobsEnv, name: str, lanes: int) -> list[str]:
    """Start "first", and once it runs, queue "second"; what ran, in order."""
    pair = Pair()
    await env.start_worker(JobRegistry([pair.handler(name, lanes)]))
    await env.start_relay()
    for step in ("first", "second"):
        async with unit_of_work(env.sessions) as session:
            await enqueue(session, name, Step(name=step), job_id=f"{name}-{step}")
        await asyncio.wait_for(pair.first_started.wait(), 8.0)
    await wait_until(lambda: "first" in pair.ran, timeout=10.0, message=f"ran {pair.ran}")
    return pair.ran


def test_a_job_type_needs_a_lane() -> None:
    async def run(ctx: JobContext, payload: Step) -> None:
        return None

    with pytest.raises(ValueError, match="at least one lane"):
        JobHandler("media.no-lanes", Step, run, POLICY, lanes=0)


async def test_a_free_lane_claims_the_next_job_while_another_runs(jobs_env: JobsEnv) -> None:
    assert await run_pair(jobs_env, "media.two-lanes", lanes=2) == ["second", "first"]


async def test_with_one_lane_the_next_job_waits_for_the_running_one(jobs_env: JobsEnv) -> None:
    # The contrast that makes the test above mean something: one job at a time.
    ran = await run_pair(jobs_env, "media.one-lane", lanes=1)
    assert ran == ["gave up", "second", "first"]
