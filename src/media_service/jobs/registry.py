"""Named job handlers with typed payloads, and the registry a worker runs.

A job type is a dotted name (``media.renditions``) and a pydantic payload model. Its
handler is declared with :func:`job`; the worker subscribes one durable consumer per job
type (``job_media_renditions``) on the subject ``jobs.<name>``, shared by every worker
process, so a job is handed to one worker at a time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.events.bus import DeliveryPolicy

JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)*$")
MAX_JOB_NAME = 60  # the durable consumer name ("job_" + name) has at most 64 characters
SUBJECT_PREFIX = "jobs."
CONSUMER_PREFIX = "job_"

P = TypeVar("P", bound=BaseModel)


class JobObsolete(Exception):
    """Raised by a handler whose subject is gone (a file deleted or erased before its job
    ran): nothing was done, and nothing is recorded, so no trace of the job's subject stays
    behind in the handled-job records (a redelivered copy finds it gone again)."""


class JobConfigurationError(RuntimeError):
    """Job handlers do not match the job types the code enqueues: fix it before starting."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets besides its payload.

    ``session`` is the job's unit of work: the worker commits it after the handler returns
    (together with the record that the job is done) and rolls it back if it raises. On
    SQLite the first statement takes the database's write lock until that commit, so do
    slow work (decoding, network) before touching the session.
    """

    job_id: str
    job_name: str
    attempt: int
    session: AsyncSession


JobFunction = Callable[[JobContext, P], Awaitable[None]]


@dataclass(frozen=True)
class JobHandler(Generic[P]):
    """The handler of one job type; ``policy`` overrides the worker's retry policy.

    ``lanes`` is how many subscriptions of the job type's durable consumer one worker
    process holds. Each lane claims, runs and settles its deliveries on its own, so a
    lane still running a slow job does not keep a free one from claiming the next (the
    in-process bus settles a claimed batch only when all of it is done).
    """

    name: str
    payload_type: type[P]
    run: JobFunction[P]
    policy: DeliveryPolicy | None = None
    lanes: int = 1

    def __post_init__(self) -> None:
        if self.lanes < 1:
            raise ValueError(f"a job type needs at least one lane, not {self.lanes}")

    @property
    def subject(self) -> str:
        return job_subject(self.name)

    @property
    def consumer(self) -> str:
        return job_consumer(self.name)


def validate_job_name(name: str) -> str:
    if len(name) > MAX_JOB_NAME or not JOB_NAME.match(name):
        raise ValueError(
            f"job name must be dot-separated tokens of a-z, 0-9 and '-' "
            f"(at most {MAX_JOB_NAME} characters): {name[:100]!r}"
        )
    return name


def job_subject(name: str) -> str:
    """The bus subject of a job type."""
    return SUBJECT_PREFIX + validate_job_name(name)


def job_consumer(name: str) -> str:
    """The durable consumer shared by every worker of a job type (no '_' in job names, so
    the mapping is one to one)."""
    return CONSUMER_PREFIX + validate_job_name(name).replace(".", "_")


def job(
    name: str,
    payload_type: type[P],
    *,
    policy: DeliveryPolicy | None = None,
    lanes: int = 1,
) -> Callable[[JobFunction[P]], JobHandler[P]]:
    """Declare ``async def run(ctx, payload)`` as the handler of job type ``name``::

    @job("media.renditions", RenditionsPayload)
    async def make_renditions(ctx: JobContext, payload: RenditionsPayload) -> None: ...
    """
    validate_job_name(name)

    def wrap(run: JobFunction[P]) -> JobHandler[P]:
        return JobHandler(name, payload_type, run, policy, lanes)

    return wrap


class JobRegistry:
    """The job handlers one worker runs, at most one per job type."""

    def __init__(self, handlers: Iterable[JobHandler[Any]] = ()) -> None:
        self._all = list(handlers)
        self._by_name = {handler.name: handler for handler in self._all}

    def __iter__(self) -> Iterator[JobHandler[Any]]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def get(self, name: str) -> JobHandler[Any] | None:
        return self._by_name.get(name)

    def validate(self, expected_names: Iterable[str] = ()) -> None:
        """Raise :class:`JobConfigurationError` naming every job type that has two
        handlers, and every expected one that has none."""
        counts = Counter(handler.name for handler in self._all)
        twice = sorted(name for name, count in counts.items() if count > 1)
        missing = sorted(set(expected_names) - set(counts))
        problems = []
        if twice:
            problems.append(f"job types with more than one handler: {', '.join(twice)}")
        if missing:
            problems.append(f"job types with no handler: {', '.join(missing)}")
        if problems:
            raise JobConfigurationError("; ".join(problems))
