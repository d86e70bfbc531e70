"""The enhancement client against a real (scripted) HTTP server: what each answer means,
the circuit breaker, and what is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from media_service.metadata.analyzer import AnalyzerRejected, AnalyzerUnavailable
from media_service.metadata.breaker import CircuitBreaker
from media_service.versions.enhancer import EnhanceRequest, HttpEnhancer, enhance_url
from metadata.analyzer_server import Reply, ScriptedService, running

REQUEST = EnhanceRequest(
    photo_id="file_1",
    version_id="ver_1",
    organization_id="org",
    user_id="u",
    image_url="http://media.test/signed",
    width=10,
    height=8,
    mode="auto",
    params={"strength": 0.5},
)
IMAGE = b"\x89PNG\r\n\x1a\n" + b"x" * 300_000  # bytes only: the client does not decode


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ScriptedService, str]]:
    app = ScriptedService()
    with running(app) as url:
        yield app, url


@pytest.fixture
async def enhancer(server: tuple[ScriptedService, str]) -> AsyncIterator[HttpEnhancer]:
    _, url = server
    client = HttpEnhancer(
        enhance_url(f"{url}/v1/analyse"),
        token="secret-token",
        timeout=1.0,
        breaker=CircuitBreaker(failure_threshold=2, reset_timeout=60),
    )
    try:
        yield client
    finally:
        await client.close()


async def read(enhancer: HttpEnhancer) -> bytes | None:
    async with enhancer.enhance(REQUEST) as body:
        return None if body is None else b"".join([chunk async for chunk in body])


async def test_the_image_is_streamed_back_and_the_request_is_as_documented(
    server: tuple[ScriptedService, str], enhancer: HttpEnhancer
) -> None:
    app, _ = server
    app.script(Reply(body=IMAGE, headers={"content-type": "image/png"}, chunked=True))
    assert await read(enhancer) == IMAGE
    [received] = app.requests
    assert (received.method, received.path) == ("POST", "/v1/enhance")
    assert received.headers["authorization"] == "Bearer secret-token"
    assert received.json() == {
        "photo_id": "file_1",
        "version_id": "ver_1",
        "organization_id": "org",
        "user_id": "u",
        "image_url": "http://media.test/signed",
        "width": 10,
        "height": 8,
        "mode": "auto",
        "params": {"strength": 0.5},
    }


async def test_each_answer_means_what_the_contract_says(
    server: tuple[ScriptedService, str], enhancer: HttpEnhancer
) -> None:
    app, _ = server
    app.script(Reply(status=204, body=b""))
    assert await read(enhancer) is None  # declined
    for status in (400, 401, 404, 202, 302):
        app.script(Reply(status=status))
        with pytest.raises(AnalyzerRejected):
            await read(enhancer)
    assert enhancer.breaker.state == "closed"  # refusals are answers: the service is up
    app.script(Reply(status=429, headers={"Retry-After": "7"}))
    with pytest.raises(AnalyzerUnavailable) as unavailable:
        await read(enhancer)
    assert unavailable.value.retry_after == 7


async def test_an_outage_opens_the_circuit(
    server: tuple[ScriptedService, str], enhancer: HttpEnhancer
) -> None:
    app, _ = server
    app.script(Reply(status=503), Reply(delay=3.0))  # an error, then no answer in time
    for _ in range(2):
        with pytest.raises(AnalyzerUnavailable):
            await read(enhancer)
    assert enhancer.breaker.state == "open"
    app.script(Reply(body=IMAGE))
    with pytest.raises(AnalyzerUnavailable, match="circuit open"):
        await read(enhancer)
    assert app.requests == []  # failing fast: nothing was sent


def test_the_enhancement_endpoint_sits_next_to_the_analysis_url() -> None:
    assert enhance_url("http://ai:8080/v1/analyse") == "http://ai:8080/v1/enhance"
    assert enhance_url("http://ai:8080/analyse") == "http://ai:8080/enhance"
    assert enhance_url("https://ai.example.com") == "https://ai.example.com/enhance"
    with pytest.raises(ValueError, match="absolute"):
        HttpEnhancer("ftp://ai/enhance")
