"""The AI analyzer client against a real (scripted) HTTP service: contract, retries, limits
and the circuit breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from media_service.metadata.analyzer import (
    AnalysisRequest,
    AnalysisResult,
    AnalyzerRejected,
    AnalyzerUnavailable,
    HttpAnalyzer,
    Label,
    NoAnalyzer,
    analyzer_from_settings,
    retry_after_seconds,
)
from media_service.metadata.breaker import CircuitBreaker, CircuitOpen

from .analyzer_server import GOOD_BODY, Reply, ScriptedService, running

TOKEN = "secret-token-0123456789"
SIGNED_URL = "https://media.example/api/v1/media/files/f1/rendition?expires=1&signature=s3cr3t"
REQUEST = AnalysisRequest(
    file_id="file_1",
    organization_id="org_1",
    user_id="user_1",
    image_url=SIGNED_URL,
    width=1024,
    height=768,
)
MakeAnalyzer = Callable[..., HttpAnalyzer]


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ScriptedService, str]]:
    app = ScriptedService()
    with running(app) as url:
        yield app, url


@pytest.fixture
def service(server: tuple[ScriptedService, str]) -> ScriptedService:
    app, _ = server
    app.script()
    app.default = Reply()
    return app


@pytest.fixture
async def make_analyzer(server: tuple[ScriptedService, str]) -> AsyncIterator[MakeAnalyzer]:
    """HttpAnalyzers aimed at the scripted service, with short back-offs; closed after use."""
    created: list[HttpAnalyzer] = []

    def make(**overrides: Any) -> HttpAnalyzer:
        options: dict[str, Any] = {
            "token": TOKEN,
            "timeout": 2.0,
            "backoff": 0.01,
            "max_backoff": 0.05,
            "max_retry_after": 2.0,
        }
        analyzer = HttpAnalyzer(f"{server[1]}/v1/analyse", **(options | overrides))
        created.append(analyzer)
        return analyzer

    yield make
    for analyzer in created:
        await analyzer.close()


def labels(*pairs: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"name": name, "confidence": confidence} for name, confidence in pairs]


# -- the contract ------------------------------------------------------------------------


async def test_sends_the_request_and_normalises_the_answer(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    body = {
        "model": "vision-2024.06",
        "labels": labels((" Beach ", 0.91), ("BEACH", 0.95), ("Sea   Shore", 0.7), ("sunset", 0.2)),
        "objects": [
            *labels(("Dog", 0.88), ("dog", 0.5)),
            {"name": "kite", "confidence": 0.6, "box": [1, 2]},
        ],
        "scenes": labels(("Outdoor", 0.5), ("night", 0.49)),
        "extra": "ignored",
    }
    service.script(Reply(body=body))

    result = await make_analyzer(min_confidence=0.5).analyse(REQUEST)

    assert result == AnalysisResult(
        labels=[Label("beach", 0.95), Label("sea shore", 0.7)],
        objects=[Label("dog", 0.88), Label("kite", 0.6)],
        scenes=[Label("outdoor", 0.5)],
        model="vision-2024.06",
    )
    [received] = service.requests
    assert (received.method, received.path) == ("POST", "/v1/analyse")
    assert received.headers["authorization"] == f"Bearer {TOKEN}"
    assert received.headers["content-type"] == "application/json"
    assert received.json() == {
        "file_id": "file_1",
        "organization_id": "org_1",
        "user_id": "user_1",
        "image_url": SIGNED_URL,
        "width": 1024,
        "height": 768,
    }


async def test_no_authorization_header_without_a_token(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    result = await make_analyzer(token=None).analyse(REQUEST)

    assert result is not None and result.labels == [Label("beach", 0.9)]
    assert "authorization" not in service.requests[0].headers


async def test_missing_lists_are_empty(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    service.script(Reply(body={"model": "m", "labels": labels(("cat", 0.8))}))

    result = await make_analyzer().analyse(REQUEST)

    assert result == AnalysisResult([Label("cat", 0.8)], [], [], "m")


@pytest.mark.parametrize("status", [202, 204])
async def test_accepted_or_no_content_means_declined(
    service: ScriptedService, make_analyzer: MakeAnalyzer, status: int
) -> None:
    service.script(Reply(status=status, body=b""))

    assert await make_analyzer().analyse(REQUEST) is None
    assert len(service.requests) == 1


async def test_no_analyzer_declines() -> None:
    analyzer = NoAnalyzer()

    assert await analyzer.analyse(REQUEST) is None
    await analyzer.close()


def test_analyzer_from_settings() -> None:
    assert isinstance(analyzer_from_settings(None, None, 5.0), NoAnalyzer)
    assert isinstance(analyzer_from_settings("  ", "t", 5.0), NoAnalyzer)
    analyzer = analyzer_from_settings("http://ai.internal/analyse", "t", 5.0)
    assert isinstance(analyzer, HttpAnalyzer)
    assert analyzer.breaker is not None and analyzer.breaker.state == "closed"


@pytest.mark.parametrize("url", ["ftp://ai/x", "/relative", "http://"])
def test_refuses_a_url_that_is_not_absolute_http(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        HttpAnalyzer(url)


# -- retries -----------------------------------------------------------------------------


async def test_retries_server_errors_then_succeeds(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    service.script(Reply(status=500, body=b"boom"), Reply(status=503, body=b""), Reply())

    result = await make_analyzer(retries=2).analyse(REQUEST)

    assert result is not None and result.model == "vision-1"
    assert len(service.requests) == 3
    assert all(r.json() == service.requests[0].json() for r in service.requests)


async def test_gives_up_after_the_retries(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    service.default = Reply(status=502, body=b"")

    with pytest.raises(AnalyzerUnavailable, match="HTTP 502"):
        await make_analyzer(retries=2).analyse(REQUEST)
    assert len(service.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422, 302])
async def test_client_errors_are_rejected_without_retry(
    service: ScriptedService, make_analyzer: MakeAnalyzer, status: int
) -> None:
    service.default = Reply(status=status, body={"detail": "no"}, headers={"Location": "/x"})

    with pytest.raises(AnalyzerRejected, match=f"HTTP {status}"):
        await make_analyzer(retries=3).analyse(REQUEST)
    assert len(service.requests) == 1


async def test_request_timeout_is_retried(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    service.script(Reply(status=408, body=b""), Reply())

    assert await make_analyzer(retries=1).analyse(REQUEST) is not None
    assert len(service.requests) == 2


async def test_slow_service_times_out_after_the_retries(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    service.default = Reply(delay=1.5)
    started = time.monotonic()

    with pytest.raises(AnalyzerUnavailable, match=r"no answer within 0\.3 s"):
        await make_analyzer(timeout=0.3, retries=1).analyse(REQUEST)

    assert len(service.requests) == 2
    assert time.monotonic() - started < 1.2  # two bounded attempts, not the server's delay


async def test_slow_then_fast_succeeds(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    service.script(Reply(delay=1.0), Reply())

    assert await make_analyzer(timeout=0.3, retries=1).analyse(REQUEST) is not None
    assert len(service.requests) == 2


async def test_unreachable_service_is_unavailable() -> None:
    with running(ScriptedService()) as url:
        pass  # the port is free again, and nothing listens on it
    analyzer = HttpAnalyzer(f"{url}/analyse", retries=2, backoff=0.01)
    try:
        with pytest.raises(AnalyzerUnavailable, match="transport error: ConnectError"):
            await analyzer.analyse(REQUEST)
    finally:
        await analyzer.close()


async def test_retry_after_is_honoured(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    service.script(Reply(status=429, body=b"", headers={"Retry-After": "1"}), Reply())
    started = time.monotonic()

    result = await make_analyzer(retries=1, backoff=0.0).analyse(REQUEST)

    assert result is not None
    assert len(service.requests) == 2
    assert 0.95 <= time.monotonic() - started < 2.0


async def test_retry_after_beyond_the_cap_ends_the_call(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    service.default = Reply(status=503, body=b"", headers={"Retry-After": "3600"})
    started = time.monotonic()

    with pytest.raises(AnalyzerUnavailable) as caught:
        await make_analyzer(retries=3, max_retry_after=2.0).analyse(REQUEST)

    assert caught.value.retry_after == 3600.0  # for the job system to schedule the retry
    assert len(service.requests) == 1
    assert time.monotonic() - started < 1.0


def test_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now=now) == 120.0
    assert (
        retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now)
        == 30.0
    )
    assert (
        retry_after_seconds(format_datetime(now - timedelta(hours=1), usegmt=True), now=now) == 0.0
    )
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds("-5", now=now) is None
    assert retry_after_seconds(None, now=now) is None


# -- invalid answers ---------------------------------------------------------------------


def _with(**changes: Any) -> dict[str, Any]:
    return GOOD_BODY | changes


MALFORMED: dict[str, Any] = {
    "not json": b"<html>oops</html>",
    "truncated json": b'{"model": "m", "labels": [',
    "a list": [GOOD_BODY],
    "no model": {"labels": []},
    "empty model": _with(model=""),
    "model with a space": _with(model="vision 2"),
    "model too long": _with(model="m" * 61),
    "model as number": _with(model=2),
    "confidence above 1": _with(labels=labels(("a", 1.5))),
    "negative confidence": _with(labels=labels(("a", -0.1))),
    "confidence as text": _with(labels=[{"name": "a", "confidence": "0.9"}]),
    "confidence as bool": _with(labels=[{"name": "a", "confidence": True}]),
    "NaN confidence": b'{"model": "m", "labels": [{"name": "a", "confidence": NaN}]}',
    "name as number": _with(labels=[{"name": 7, "confidence": 0.9}]),
    "blank name": _with(labels=labels(("   ", 0.9))),
    "name too long": _with(objects=labels(("x" * 101, 0.9))),
    "control character": _with(scenes=labels(("a\x00b", 0.9))),
    "too many labels": _with(labels=labels(*[(f"l{i}", 0.9) for i in range(201)])),
    "labels not a list": _with(labels={"name": "a", "confidence": 0.9}),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_answers_are_rejected_without_retry(
    service: ScriptedService, make_analyzer: MakeAnalyzer, body: Any
) -> None:
    service.default = Reply(body=body)

    with pytest.raises(AnalyzerRejected, match="invalid response body"):
        await make_analyzer(retries=2).analyse(REQUEST)
    assert len(service.requests) == 1


async def test_limits_are_inclusive(service: ScriptedService, make_analyzer: MakeAnalyzer) -> None:
    body = _with(labels=labels(*[(f"{i:03d}" + "x" * 97, 1.0) for i in range(200)]))
    service.script(Reply(body=body))

    result = await make_analyzer(min_confidence=0.0).analyse(REQUEST)

    assert result is not None and len(result.labels) == 200
    assert {len(label.name) for label in result.labels} == {100}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_answers_are_rejected(
    service: ScriptedService, make_analyzer: MakeAnalyzer, chunked: bool
) -> None:
    padding = "x" * (2 << 20)  # valid JSON, 2 MiB
    service.default = Reply(body=_with(padding=padding), chunked=chunked)

    with pytest.raises(AnalyzerRejected, match="larger than 1048576 bytes"):
        await make_analyzer(retries=2).analyse(REQUEST)
    assert len(service.requests) == 1


async def test_the_size_cap_is_configurable(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    service.default = Reply(chunked=True)

    with pytest.raises(AnalyzerRejected, match="larger than 10 bytes"):
        await make_analyzer(max_body_bytes=10).analyse(REQUEST)


# -- the circuit breaker -----------------------------------------------------------------


async def test_circuit_opens_and_then_fails_fast(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    service.default = Reply(status=500, body=b"")
    breaker = CircuitBreaker(failure_threshold=3, clock=FakeClock())
    analyzer = make_analyzer(retries=1, breaker=breaker)

    for expected_failures in (1, 2, 3):
        with pytest.raises(AnalyzerUnavailable, match="HTTP 500"):
            await analyzer.analyse(REQUEST)
        assert breaker.failures == expected_failures
    assert breaker.state == "open"
    assert len(service.requests) == 6  # three calls of two attempts each

    for _ in range(5):
        with pytest.raises(AnalyzerUnavailable, match="circuit open"):
            await analyzer.analyse(REQUEST)
    assert len(service.requests) == 6  # nothing reached the service


async def test_half_open_trial_closes_the_circuit_on_success(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=30.0, clock=clock)
    analyzer = make_analyzer(retries=0, breaker=breaker)
    service.script(Reply(status=503, body=b""), Reply(status=503, body=b""), Reply())
    for _ in range(2):
        with pytest.raises(AnalyzerUnavailable):
            await analyzer.analyse(REQUEST)

    clock.advance(29.9)
    assert breaker.state == "open"
    with pytest.raises(AnalyzerUnavailable, match="circuit open"):
        await analyzer.analyse(REQUEST)
    clock.advance(0.1)
    assert breaker.state == "half_open"

    assert await analyzer.analyse(REQUEST) is not None
    assert (breaker.state, breaker.failures) == ("closed", 0)
    assert len(service.requests) == 3


async def test_failed_trial_reopens_the_circuit(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=10.0, clock=clock)
    analyzer = make_analyzer(retries=0, breaker=breaker)
    service.default = Reply(status=500, body=b"")
    with pytest.raises(AnalyzerUnavailable):
        await analyzer.analyse(REQUEST)

    clock.advance(10.0)
    with pytest.raises(AnalyzerUnavailable, match="HTTP 500"):
        await analyzer.analyse(REQUEST)  # the trial
    assert breaker.state == "open"
    clock.advance(9.0)
    with pytest.raises(AnalyzerUnavailable, match="circuit open"):
        await analyzer.analyse(REQUEST)  # the cool-down restarted at the trial
    assert len(service.requests) == 2


async def test_half_open_lets_one_trial_through(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5.0, clock=clock)
    analyzer = make_analyzer(retries=0, breaker=breaker)
    service.script(Reply(status=500, body=b""), Reply(delay=0.3))
    with pytest.raises(AnalyzerUnavailable):
        await analyzer.analyse(REQUEST)
    clock.advance(5.0)

    trial = asyncio.create_task(analyzer.analyse(REQUEST))
    await asyncio.sleep(0.05)  # the trial is now waiting for the slow service
    with pytest.raises(AnalyzerUnavailable, match="circuit open"):
        await analyzer.analyse(REQUEST)

    assert await trial is not None
    assert breaker.state == "closed"
    assert len(service.requests) == 2


async def test_cancelled_trial_frees_the_slot(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5.0, clock=clock)
    analyzer = make_analyzer(retries=0, breaker=breaker)
    service.script(Reply(status=500, body=b""), Reply(delay=1.0), Reply())
    with pytest.raises(AnalyzerUnavailable):
        await analyzer.analyse(REQUEST)
    clock.advance(5.0)

    trial = asyncio.create_task(analyzer.analyse(REQUEST))
    await asyncio.sleep(0.05)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial

    assert breaker.state == "half_open"
    assert await analyzer.analyse(REQUEST) is not None
    assert breaker.state == "closed"


async def test_rejections_do_not_open_the_circuit(
    service: ScriptedService, make_analyzer: MakeAnalyzer
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=FakeClock())
    analyzer = make_analyzer(retries=0, breaker=breaker)
    service.script(Reply(status=500, body=b""), Reply(status=400, body=b""), Reply(status=500))
    with pytest.raises(AnalyzerUnavailable):
        await analyzer.analyse(REQUEST)
    with pytest.raises(AnalyzerRejected):
        await analyzer.analyse(REQUEST)  # the service answered: the count starts again
    with pytest.raises(AnalyzerUnavailable):
        await analyzer.analyse(REQUEST)

    assert (breaker.state, breaker.failures) == ("closed", 1)


def test_breaker_without_http() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=1.0, clock=clock)
    breaker.admit()
    breaker.record_failure()
    breaker.admit()
    breaker.record_success()
    assert (breaker.state, breaker.failures) == ("closed", 0)

    breaker.record_failure()
    breaker.record_failure()
    with pytest.raises(CircuitOpen):
        breaker.admit()
    clock.advance(1.0)
    breaker.admit()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.admit()
    breaker.release()
    breaker.admit()  # a new trial after the first ended without a verdict
    assert breaker.state == "half_open"


@pytest.mark.parametrize("kwargs", [{"failure_threshold": 0}, {"reset_timeout": -1.0}])
def test_breaker_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        CircuitBreaker(**kwargs)


# -- hygiene -----------------------------------------------------------------------------


async def test_logs_hold_no_secrets(service: ScriptedService, server: tuple[Any, str]) -> None:
    service.script(Reply(status=500, body=b""), Reply(status=401, body=b""))
    with capture_logs() as logs:
        analyzer = HttpAnalyzer(f"{server[1]}/analyse", token=TOKEN, retries=1, backoff=0.01)
        with pytest.raises(AnalyzerRejected):
            await analyzer.analyse(REQUEST)
        await analyzer.close()

    assert [entry["event"] for entry in logs] == ["analyzer_retry", "analyzer_rejected"]
    assert all(entry["analyzer"] == "127.0.0.1" for entry in logs)
    text = repr(logs)
    assert TOKEN not in text and "s3cr3t" not in text


async def test_close_leaves_an_injected_client_open(
    service: ScriptedService, server: tuple[Any, str]
) -> None:
    async with httpx.AsyncClient() as client:
        analyzer = HttpAnalyzer(f"{server[1]}/analyse", client=client)
        await analyzer.close()
        assert not client.is_closed
        assert await analyzer.analyse(REQUEST) is not None
