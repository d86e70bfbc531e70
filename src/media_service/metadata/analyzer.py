"""The client of the external AI/vision service that labels photos (spec Flow 1).

After an upload, a background job sends :class:`AnalysisRequest` (with a signed URL of a
preview JPEG) to the configured service and stores the labels, objects and scenes of the
:class:`AnalysisResult`. The contract is described in ``docs/analyzer.md``.

Outcomes of :meth:`Analyzer.analyse`: a result; ``None`` when the analyzer declined (or
none is configured); :class:`AnalyzerUnavailable` when trying again later may succeed;
:class:`AnalyzerRejected` when it cannot.
"""

from __future__ import annotations

import asyncio
import math
import random
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Protocol

import httpx
import structlog
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from media_service.metadata.breaker import CircuitBreaker, CircuitOpen

MAX_ITEMS = 200
MAX_NAME_LENGTH = 100
MAX_MODEL_LENGTH = 60
MAX_BODY_BYTES = 1 << 20
_MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# 202: the service will PUT its results later; 204: it declined (e.g. unsupported content).
_DECLINED = frozenset({202, 204})
_RETRYABLE = frozenset({408, 429})


class AnalyzerError(Exception):
    """Base of the analyzer's failures."""


class AnalyzerUnavailable(AnalyzerError):
    """The service could not be reached or is overloaded: retry the job later.

    ``retry_after`` is the delay in seconds the service asked for, when it named one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AnalyzerRejected(AnalyzerError):
    """The service refused the request or sent an invalid answer: retrying cannot help."""


@dataclass(frozen=True, slots=True)
class AnalysisRequest:
    """What the service needs to analyse one photo; ``image_url`` is a short-lived signed URL
    of a preview JPEG of ``width`` × ``height`` pixels (a credential: never log it)."""

    file_id: str
    organization_id: str
    user_id: str
    image_url: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Label:
    """One label: ``name`` lower-case and stripped (1..100 chars), ``confidence`` in 0..1."""

    name: str
    confidence: float


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """Labels, objects and scenes above the confidence threshold, best first.

    ``model`` identifies the service's model; stored as the label source ``ai:<model>``.
    """

    labels: list[Label]
    objects: list[Label]
    scenes: list[Label]
    model: str


@asynccontextmanager
async def guarded(breaker: CircuitBreaker) -> AsyncIterator[None]:
    """Let one call to the AI service through ``breaker`` and count how it ended: a
    service that was unreachable or said it is unavailable is a failure; one that refused
    the request was up; anything else (cancelled, our own error) neither."""
    try:
        breaker.admit()
    except CircuitOpen:
        raise AnalyzerUnavailable("circuit open") from None
    try:
        yield
    except AnalyzerUnavailable:
        breaker.record_failure()
        raise
    except AnalyzerRejected:
        breaker.record_success()  # the service is up; the request was the problem
        raise
    except BaseException:
        breaker.release()
        raise
    breaker.record_success()


class Analyzer(Protocol):
    """Something that labels photos: an HTTP service, or nothing at all."""

    async def analyse(self, request: AnalysisRequest) -> AnalysisResult | None:
        """Analyse one photo; ``None`` when declined. Raises :class:`AnalyzerError`."""
        ...

    async def close(self) -> None:
        """Release connections; the analyzer is unusable afterwards."""
        ...


class NoAnalyzer(Analyzer):
    """The analyzer used when no service is configured: declines every photo."""

    async def analyse(self, request: AnalysisRequest) -> AnalysisResult | None:
        return None

    async def close(self) -> None:
        return None


# -- the response contract -----------------------------------------------------------------


def _normalise_name(name: str) -> str:
    # NFC and collapsed whitespace, so that "Beach", " beach " and "be\u0061ch" are one label.
    name = " ".join(unicodedata.normalize("NFC", name).split()).lower()
    if not name:
        raise ValueError("a name must not be blank")
    if any(unicodedata.category(char) in {"Cc", "Cf"} for char in name):
        raise ValueError("a name must not contain control characters")
    return name


_Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH), AfterValidator(_normalise_name)]


class _LabelIn(BaseModel):
    # Unknown fields (bounding boxes, ids) are ignored so that services may send more.
    model_config = ConfigDict(strict=True, extra="ignore")

    name: _Name
    confidence: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


class _ResponseIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    # The same rule as the ``source`` of ``PUT /api/v1/media/metadata/{file_id}``: both
    # become the label source ``ai:<model>``.
    model: str = Field(min_length=1, max_length=MAX_MODEL_LENGTH, pattern=_MODEL_PATTERN)
    labels: list[_LabelIn] = Field(default_factory=list, max_length=MAX_ITEMS)
    objects: list[_LabelIn] = Field(default_factory=list, max_length=MAX_ITEMS)
    scenes: list[_LabelIn] = Field(default_factory=list, max_length=MAX_ITEMS)


def parse_response(body: bytes, *, min_confidence: float) -> AnalysisResult:
    """Validate a service's answer and keep the labels at or above ``min_confidence``.

    Each list is de-duplicated by normalised name (keeping the highest confidence) and
    sorted best first. Raises :class:`AnalyzerRejected` on any invalid body.
    """
    try:
        parsed = _ResponseIn.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.error_count()
        raise AnalyzerRejected(f"invalid response body ({errors} error(s))") from None

    def keep(items: list[_LabelIn]) -> list[Label]:
        best: dict[str, float] = {}
        for item in items:
            if item.confidence >= min_confidence:
                best[item.name] = max(item.confidence, best.get(item.name, 0.0))
        ranked = sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))
        return [Label(name, confidence) for name, confidence in ranked]

    return AnalysisResult(
        keep(parsed.labels), keep(parsed.objects), keep(parsed.scenes), parsed.model
    )


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """The delay a ``Retry-After`` header asks for (seconds or an HTTP date), else ``None``."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# -- the HTTP client -----------------------------------------------------------------------


class HttpAnalyzer(Analyzer):
    """Analyses photos by POSTing :class:`AnalysisRequest` as JSON to ``url``.

    Each attempt is bounded by ``timeout`` seconds in total. Connection errors, timeouts,
    408, 429 and 5xx are retried ``retries`` times with jittered exponential back-off
    (``backoff`` × 2ⁿ, at most ``max_backoff``), or after ``Retry-After`` when the service
    sends one no longer than ``max_retry_after``; a longer one ends the call at once with
    :class:`AnalyzerUnavailable` carrying it. The optional ``breaker`` sees one outcome per
    call (after its retries); a rejected call counts as an answer, not a failure.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        breaker: CircuitBreaker | None = None,
        min_confidence: float = 0.5,
        client: httpx.AsyncClient | None = None,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 30.0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in {"http", "https"} or not parsed.host:
            raise ValueError("the analyzer URL must be an absolute http(s) URL")
        if timeout <= 0 or retries < 0 or not 0.0 <= min_confidence <= 1.0:
            raise ValueError("timeout > 0, retries >= 0 and 0 <= min_confidence <= 1 required")
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._retries = retries
        self._breaker = breaker
        self._min_confidence = min_confidence
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)
        self._backoff = (backoff, max_backoff)
        self._max_retry_after = max_retry_after
        self._max_body_bytes = max_body_bytes
        # Bound per instance so the log shows which service; never the URL (it may hold
        # credentials), the token or the signed image URL.
        self._log = structlog.get_logger(__name__).bind(analyzer=parsed.host)

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker, for metrics and ``doctor``."""
        return self._breaker

    async def analyse(self, request: AnalysisRequest) -> AnalysisResult | None:
        if self._breaker is None:
            return await self._with_retries(request)
        async with guarded(self._breaker):
            return await self._with_retries(request)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _with_retries(self, request: AnalysisRequest) -> AnalysisResult | None:
        payload = asdict(request)
        attempt = 0
        while True:
            try:
                return await self._attempt(payload)
            except AnalyzerUnavailable as exc:
                delay = self._delay(attempt, exc.retry_after)
                if attempt >= self._retries or delay is None:
                    raise
                attempt += 1
                self._log.warning(
                    "analyzer_retry",
                    file_id=request.file_id,
                    attempt=attempt,
                    delay=round(delay, 3),
                    reason=str(exc),
                )
                await asyncio.sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before the next attempt; ``None``: the service asked for longer
        than we are willing to wait inside one job."""
        if retry_after is not None:
            return retry_after if retry_after <= self._max_retry_after else None
        base, cap = self._backoff
        # Full jitter: workers that failed together do not retry together.
        return random.uniform(0.0, min(cap, base * 2**attempt))

    async def _attempt(self, payload: dict[str, Any]) -> AnalysisResult | None:
        try:
            async with asyncio.timeout(self._timeout):
                status, headers, body = await self._post(payload)
        except TimeoutError:
            raise AnalyzerUnavailable(f"no answer within {self._timeout:g} s") from None
        except httpx.TransportError as exc:
            raise AnalyzerUnavailable(f"transport error: {type(exc).__name__}") from None
        except httpx.DecodingError:
            raise AnalyzerRejected("the response body cannot be decoded") from None
        return self._interpret(status, headers, body)

    async def _post(self, payload: dict[str, Any]) -> tuple[int, httpx.Headers, bytes]:
        async with self._client.stream(
            "POST", self._url, json=payload, headers=self._headers, timeout=self._timeout
        ) as response:
            if response.status_code != 200:
                return response.status_code, response.headers, b""
            return 200, response.headers, await self._read_capped(response)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        # Refuse before reading when the size is declared, and stop reading at the cap
        # when it is not (chunked), so a hostile service cannot exhaust our memory.
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_body_bytes:
            raise AnalyzerRejected(f"response body larger than {self._max_body_bytes} bytes")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_body_bytes:
                raise AnalyzerRejected(f"response body larger than {self._max_body_bytes} bytes")
        return bytes(body)

    def _interpret(self, status: int, headers: httpx.Headers, body: bytes) -> AnalysisResult | None:
        if status == 200:
            return parse_response(body, min_confidence=self._min_confidence)
        if status in _DECLINED:
            return None
        if status in _RETRYABLE or status >= 500:
            retry_after = retry_after_seconds(headers.get("Retry-After"))
            raise AnalyzerUnavailable(f"HTTP {status}", retry_after=retry_after)
        self._log.warning("analyzer_rejected", status=status)
        raise AnalyzerRejected(f"HTTP {status}")


def analyzer_from_settings(url: str | None, token: str | None, timeout: float) -> Analyzer:
    """The configured analyzer: :class:`HttpAnalyzer` with a circuit breaker when ``url`` is
    set (``MEDIA_AI_SERVICE_URL``), else :class:`NoAnalyzer`."""
    if not url or not url.strip():
        return NoAnalyzer()
    return HttpAnalyzer(url.strip(), token=token or None, timeout=timeout, breaker=CircuitBreaker())
