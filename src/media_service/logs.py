"""Structured logging: JSON lines for machines, readable lines in a terminal.

Every line, from structlog or from a stdlib logger (uvicorn, SQLAlchemy, Alembic), passes
through :func:`redact` last, after tracebacks are rendered, so no line carries a secret
whatever the code that logged it put into it:

- values of secret-like keys (``token``, ``authorization``, ``password``, ``secret``,
  ``signature``, ``sig``, ``cookie``, ``*_token`` …) become ``[redacted]``;
- values of location keys (``latitude``, ``longitude``, ``lat``, ``lon``, ``gps*``,
  ``location`` …) become ``[redacted]``, in nested mappings too (EXIF's ``GPS`` group);
- in any string: the query of a URL that carries a signature, expiry or token (our signed
  URLs' ``exp``/``kid``/``sig``, S3's ``X-Amz-*``) is replaced by ``[redacted]``, as are
  bare ``sig=…`` pairs, ``Bearer …`` credentials, JWTs, passwords in URLs and
  ``lat=…``/``"longitude": …`` coordinates.

Redaction reads at most 64 KiB of a value, then the value is cut to :data:`MAX_TEXT`
characters (a traceback keeps its end); every pattern runs in time linear in the text.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

from media_service.config import Settings

REDACTED = "[redacted]"
# Keys whose values the logging set-up writes itself (never from a request).
_WRITTEN_BY_US = frozenset({"timestamp", "level", "logger", "request_id"})
MAX_TEXT = 4096  # longer strings are cut (after they are redacted) before they are written
MAX_TRACEBACK = 16384  # a traceback keeps its end: the exception's message is the last line
_MAX_SCANNED = 65536  # what redaction reads at the most (the rest is cut anyway)
# Every text that could hold something to redact has one of these (a cheap first look).
_MAYBE_SECRET = re.compile(r"[=?@:]|eyJ|bearer|basic", re.IGNORECASE)
_MAX_DEPTH = 8  # nested values deeper than this are replaced whole

_SECRET_KEYS = frozenset(
    {
        "token",
        "tokens",
        "authorization",
        "proxy_authorization",
        "password",
        "passwd",
        "secret",
        "signature",
        "sig",
        "cookie",
        "cookies",
        "set_cookie",
        "api_key",
        "apikey",
        "private_key",
        "credentials",
        "signing_keys",
        "x_amz_signature",
        "x_amz_credential",
        "x_amz_security_token",
    }
)
_SECRET_SUFFIXES = ("_token", "_secret", "_password", "_signature", "_sig")
_LOCATION_KEYS = frozenset(
    {
        "latitude",
        "longitude",
        "lat",
        "lon",
        "lng",
        "coordinates",
        "coords",
        "geo",
        "geolocation",
        "location",
        "location_name",
    }
)
# Query parameters that make a URL a credential: ours (media/signing.py: exp, kid, sig),
# S3 presigned URLs' (X-Amz-*), and the usual token names.
_SIGNED_PARAMETERS = (
    r"sig|signature|exp|expires|kid|token|access_token|jwt|api_key|apikey|key"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token|x-amz-expires|x-amz-date"
    r"|awsaccesskeyid"
)
# Every regex here runs in time linear in the text (a log line is attacker-controlled: a
# request path): a query is found from its "?" to the next space in one pass and only then
# examined; a JWT is recognised among the runs of token characters; a password in a URL is
# looked for only from each "://".
_QUERY = re.compile(r"\?[^\s\"'<>#]*")
_SIGNED_PARAMETER = re.compile(rf"(?:^|[?&;])(?:{_SIGNED_PARAMETERS})=", re.IGNORECASE)
_SIGNED_PAIR = re.compile(
    rf"(?<![\w-])((?:{_SIGNED_PARAMETERS}|password|secret)=)[^&\s\"'<>#]+", re.IGNORECASE
)
_CREDENTIAL = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_.-]{16,}")
_URL_PASSWORD = re.compile(r"://([^/\s:@]*):[^/\s@]+@")
_COORDINATE = re.compile(
    r"(?i)\b(lat|latitude|lon|lng|longitude|gps\w*)([\"']?\s*[:=]\s*)"
    r"(\([^)]{0,64}\)|\[[^\]]{0,64}\]|-?\d+(?:\.\d+)?|\"[^\"]{0,64}\"|'[^']{0,64}')"
)


def redact(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """The structlog processor: secrets and coordinates out of every key and value."""
    return {key: _redact_entry(key, value) for key, value in event_dict.items()}


def _redact_entry(key: str, value: Any) -> Any:
    if key in _WRITTEN_BY_US:
        return value
    if key == "exception" and isinstance(value, str):  # a rendered traceback: keep its end
        return _cut(_redact(value[-_MAX_SCANNED:]), MAX_TRACEBACK, end=True, total=len(value))
    return _redact_item(key, value, 0)


def redact_text(text: str) -> str:
    """``text`` without credentials, signed URLs' queries and coordinates, cut to
    :data:`MAX_TEXT` characters afterwards (a log line is no place for a megabyte; cutting
    first could split a secret so that no pattern sees it)."""
    return _cut(_redact(text[:_MAX_SCANNED]), MAX_TEXT, total=len(text))


def _cut(text: str, limit: int, *, end: bool = False, total: int | None = None) -> str:
    total = len(text) if total is None else total
    if total <= limit and len(text) <= limit:
        return text
    if end:
        return f"[{total - limit} characters before]…{text[-limit:]}"
    return f"{text[:limit]}…[{total - limit} more characters]"


def _redact(text: str) -> str:
    if not _MAYBE_SECRET.search(text):
        return text  # most values: names, ids, numbers in words
    text = _QUERY.sub(_redact_query, text)
    text = _SIGNED_PAIR.sub(r"\1" + REDACTED, text)
    text = _CREDENTIAL.sub(r"\1 " + REDACTED, text)
    text = _TOKEN_RUN.sub(_redact_jwt, text)
    text = _URL_PASSWORD.sub(r"://\1:" + REDACTED + "@", text)
    return _COORDINATE.sub(r"\1\2" + REDACTED, text)


def _redact_query(match: re.Match[str]) -> str:
    query = match.group()
    return "?" + REDACTED if _SIGNED_PARAMETER.search(query) else query


def _redact_jwt(match: re.Match[str]) -> str:
    # A JWT may follow other token characters ("x-eyJ…", "token.eyJ…"): from its start on.
    token = match.group()
    start = token.find("eyJ")
    return token[:start] + REDACTED if start >= 0 and token.count(".", start) >= 2 else token


def is_sensitive_key(key: str) -> bool:
    """Whether a value stored under ``key`` is a secret or a location."""
    name = key.lower().replace("-", "_")
    return (
        name in _SECRET_KEYS
        or name.endswith(_SECRET_SUFFIXES)
        or "password" in name
        or name in _LOCATION_KEYS
        or name.startswith("gps")
    )


def _redact_item(key: object, value: Any, depth: int) -> Any:
    if isinstance(key, str) and is_sensitive_key(key):
        return REDACTED
    return _redact_value(value, depth)


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: _redact_item(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item, depth + 1) for item in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    # Anything else (dates, enums, paths, URL objects) as the text it would be shown as.
    return redact_text(str(value))


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route stdlib and structlog output through one renderer chosen by ``log_format``,
    to ``stream`` (standard error when not given)."""
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            # Last before rendering: a traceback's exception message can hold a URL.
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Our middleware logs each request (without query strings); uvicorn's access lines
    # would repeat it with the query (a signed URL's signature), and Alembic's context
    # lines would repeat on every readiness probe.
    for noisy in ("uvicorn.access", "alembic.runtime.migration", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
