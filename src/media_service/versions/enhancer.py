"""The client of the external AI service's enhancement endpoint (AI_ENHANCED versions).

The same service that labels photos (``docs/analyzer.md``) enhances them: the request is
POSTed as JSON to ``enhance`` next to ``MEDIA_AI_SERVICE_URL`` (``…/v1/analyse`` →
``…/v1/enhance``), with a short-lived signed URL of the source version's bytes, and the
answer is the enhanced image itself. The contract is in ``docs/versions.md``.

Outcomes of :meth:`Enhancer.enhance`: the image's bytes as a stream; ``None`` when the
service declined; :class:`AnalyzerUnavailable` when trying again later may succeed (the
job is retried); :class:`AnalyzerRejected` when it cannot (the job is dead-lettered).
A circuit breaker, like the analyzer's, makes an outage cost one fast failure per job.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import httpx
import structlog

from media_service.metadata.analyzer import (
    AnalyzerRejected,
    AnalyzerUnavailable,
    guarded,
    retry_after_seconds,
)
from media_service.metadata.breaker import CircuitBreaker

ENHANCE_PATH = "enhance"
_DECLINED = 204
_RETRYABLE = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class EnhanceRequest:
    """What the service needs to enhance one photo. ``image_url`` is a signed URL of the
    source version's bytes (a credential: never log it)."""

    photo_id: str
    version_id: str  # the source version
    organization_id: str
    user_id: str
    image_url: str
    width: int | None
    height: int | None
    mode: str
    params: dict[str, Any] = field(default_factory=dict)


Body = AsyncIterator[bytes]


class Enhancer(Protocol):
    """Something that enhances photos."""

    def enhance(self, request: EnhanceRequest) -> AbstractAsyncContextManager[Body | None]:
        """``async with enhancer.enhance(request) as body``: the image's bytes (read them
        inside the block), or ``None`` when declined. Raises the analyzer errors."""
        ...

    async def close(self) -> None:
        """Release connections; the enhancer is unusable afterwards."""
        ...


class HttpEnhancer(Enhancer):
    """Enhances photos by POSTing :class:`EnhanceRequest` as JSON to ``url``.

    One attempt per call (the job system retries with back-off); each network step is
    bounded by ``timeout`` seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        breaker: CircuitBreaker | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in {"http", "https"} or not parsed.host:
            raise ValueError("the enhancer URL must be an absolute http(s) URL")
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._breaker = breaker or CircuitBreaker()
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)
        # Never the URL (it may hold credentials), the token or the signed image URL.
        self._log = structlog.get_logger(__name__).bind(enhancer=parsed.host)

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    @asynccontextmanager
    async def enhance(self, request: EnhanceRequest) -> AsyncIterator[Body | None]:
        async with guarded(self._breaker):
            try:
                async with self._client.stream(
                    "POST", self._url, json=asdict(request), headers=self._headers
                ) as response:
                    self._check(response)
                    yield response.aiter_bytes() if response.status_code == 200 else None
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise AnalyzerUnavailable(f"transport error: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status in (200, _DECLINED):
            return
        if status in _RETRYABLE or status >= 500:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            raise AnalyzerUnavailable(f"HTTP {status}", retry_after=retry_after)
        self._log.warning("enhancer_rejected", status=status)
        raise AnalyzerRejected(f"HTTP {status}")


def enhance_url(ai_service_url: str) -> str:
    """The enhancement endpoint next to the analysis URL."""
    return str(httpx.URL(ai_service_url.strip()).join(ENHANCE_PATH))


@functools.cache
def shared_enhancer(ai_service_url: str, token: str | None, timeout: float) -> Enhancer:
    """One client (and one circuit breaker) per process and configuration."""
    return HttpEnhancer(enhance_url(ai_service_url), token=token, timeout=timeout)
