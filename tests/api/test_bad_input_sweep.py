"""Every route, hostile input, a valid token: never a 5xx, and every 4xx a problem.

The routes come from the app itself (``app.routes``, checked against ``/openapi.json`` so a
route hidden from the schema is not missed); parameters and body schemas come from the
OpenAPI document. For each operation, as an admin and as an ordinary member:

- each path parameter: 10,000 characters, NUL, non-UTF-8 escapes, encoded traversal,
  emoji and right-to-left override, numbers for strings and strings for numbers;
- each documented query parameter: integers beyond int64, negatives, NaN, inf, empty,
  repeated, NUL, non-UTF-8, 10,000 characters, overflowing dates, forged cursors (an
  operation without any gets a sample under an unknown name); each documented header;
- each JSON body: invalid JSON, ``null``, a list, 10,000-deep nesting, an empty body, the
  wrong Content-Type, an unknown field, and for each field of the schema (two levels into
  nested objects) wrong types, NUL and lone-surrogate strings, 1e400 and 10**40;
- each multipart body: a real JPEG with one hostile form field (NUL, non-UTF-8, 10,000
  characters), no file, two files, an unterminated body; raw uploads with hostile
  query parameters.

Path ids that are not under test point at real resources (a photo, playlist, frame,
schedule, cache entry, version) so the hostile value reaches the handler, not a 404.
Requests that would change the shared resources' existence (DELETE) only get hostile
ids. Sampling is seeded: the same requests every run.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from PIL import Image
from starlette.routing import Route
from test_bad_upload import BOUNDARY, part

from media_service.app import create_app
from media_service.auth.principal import Role

from conftest import Stack

ORG = "org_sweep"
SEED = 20240917
LONG = "a" * 10_000
# Routes FastAPI adds for its own documentation; swept for query strings only.
DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}

# Already percent-encoded path segments (sent as they are).
PATH_VALUES = [
    LONG,
    "%00",
    "x%00y",
    "%ff%fe",
    "%ed%a0%80",  # an encoded lone surrogate: not UTF-8
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e",
    "%F0%9F%98%80",  # emoji
    "%E2%80%AEgpj.exe",  # right-to-left override
    "12345",
    "-1",
    "99999999999999999999",
    "1e400",
    "NaN",
    "%27%20OR%201%3D1--",
]
# Already percent-encoded query values.
QUERY_VALUES = [
    "99999999999999999999",
    "-99999999999999999999",
    "9223372036854775808",  # int64 max + 1
    "-1",
    "0",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "",
    "%00",
    "%ff%fe",
    "%ed%a0%80",
    LONG,
    "%27%3B%20DROP%20TABLE%20x--",
    "2024-13-45T99:99:99",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00%2B14:00",
    "eyJ4IjoxfQ",  # a forged cursor: base64 of {"x":1}
    "%7B%7D",
]
# Header values (bytes: not all are ASCII).
HEADER_VALUES = [LONG.encode(), b"\xff\xfe", b"", b"-1", b"99999999999999999999", b"%00", b"x y"]
# Raw values of multipart form fields.
FORM_VALUES = [
    b"\x00",
    b"a\x00b",
    b"\xff\xfe",
    b"\xed\xa0\x80",
    LONG.encode(),
    b"",
    b"NOT_A_MEMBER",
]
RAW = "__raw__:"  # a string value written into the JSON text verbatim
# Body values sent for every field of a matching type; the rest are sampled.
ALWAYS = ["\u0000", RAW + '"\\ud800"', 10**40, 2**63, ["\u0000"]]


# -- the routes -------------------------------------------------------------------------


@dataclass
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def path_params(self) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == "path"]

    @property
    def query_params(self) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == "query"]

    @property
    def bodies(self) -> dict[str, Any]:
        return dict(self.spec.get("requestBody", {}).get("content", {}))


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, included routers flattened."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if hasattr(route, "effective_candidates"):  # FastAPI's included router
                walk(route.effective_candidates())
            elif isinstance(route, APIRoute | Route) or hasattr(route, "methods"):
                for method in route.methods or ():
                    found.add((method, route.path))

    walk(list(app.routes))
    return found


def operations(app: FastAPI, spec: dict[str, Any]) -> list[Operation]:
    documented = {
        (method.upper(), path): Operation(method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    }
    served = app_routes(app)
    # Every served route is documented (HEAD is implied by GET unless listed).
    missing = {
        (m, p)
        for m, p in served
        if (m, p) not in documented
        and p not in DOC_ROUTES
        and not (m == "HEAD" and ("GET", p) in documented)
    }
    assert not missing, f"served but not in the OpenAPI document: {sorted(missing)}"
    ops = list(documented.values())
    ops += [Operation("GET", path, {}) for path in sorted(DOC_ROUTES)]
    # DELETEs last, so the shared resources exist for everything else; before them the
    # PATCH that may give the photo to another owner.
    return sorted(ops, key=lambda op: (op.method == "DELETE", op.method == "PATCH", op.path))


# -- schemas ----------------------------------------------------------------------------


# Valid bodies need more than their required fields here.
EXAMPLES: dict[str, dict[str, Any]] = {"RenditionSignRequest": {"width": 100}}


class Schemas:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.components = spec.get("components", {}).get("schemas", {})

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def variants(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        """The non-null alternatives of ``schema``, resolved."""
        schema = self.resolve(schema)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                out: list[dict[str, Any]] = []
                for option in schema[key]:
                    out += self.variants(option)
                return out
        return [] if schema.get("type") == "null" else [schema]

    def example(self, schema: dict[str, Any], ids: dict[str, str], name: str = "") -> Any:
        """A plausible valid value (ids of real resources where a field names one)."""
        if name in ids:
            return ids[name]
        options = self.variants(schema)
        if not options:
            return None
        chosen = options[0]
        if "default" in self.resolve(schema) and len(options) > 1:
            return self.resolve(schema)["default"]
        if "enum" in chosen:
            return chosen["enum"][0]
        if "const" in chosen:
            return chosen["const"]
        kind = chosen.get("type")
        if kind == "object" or "properties" in chosen:
            props = chosen.get("properties", {})
            return EXAMPLES.get(chosen.get("title", ""), {}) | {
                key: self.example(props[key], ids, key)
                for key in chosen.get("required", [])
                if key in props
            }
        if kind == "array":
            item = self.example(chosen.get("items", {}), ids, name.removesuffix("s"))
            return [item]
        if kind == "integer":
            return int(chosen.get("minimum", 1))
        if kind == "number":
            return float(chosen.get("minimum", 1))
        if kind == "boolean":
            return True
        if kind == "string":
            if chosen.get("format") == "date-time":
                return "2024-05-01T10:00:00Z"
            if chosen.get("format") == "date":
                return "2024-05-01"
            length = max(1, int(chosen.get("minLength", 1)))
            return "x" * length
        return None

    def fields(
        self, schema: dict[str, Any], prefix: tuple[str, ...] = (), depth: int = 0
    ) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
        """(path, schema) of every property, two levels into nested objects."""
        for option in self.variants(schema)[:1]:
            for key, sub in option.get("properties", {}).items():
                yield (*prefix, key), sub
                if depth < 2:
                    for nested in self.variants(sub):
                        if nested.get("properties"):
                            yield from self.fields(nested, (*prefix, key), depth + 1)
                            break


def types_of(schemas: Schemas, schema: dict[str, Any]) -> set[str]:
    kinds = set()
    for option in schemas.variants(schema):
        kinds.add("enum" if "enum" in option else option.get("type", "object"))
    return kinds


def wrong_values(kinds: set[str]) -> list[Any]:
    """Values of the wrong type, or of the right type but hostile, for ``kinds``."""
    values: list[Any] = []
    if kinds & {"string", "enum"}:
        values += ["\u0000", "x\u0000y", RAW + '"\\ud800"', LONG, 12345, ["x"], "a" * 300]
        values += ["../../etc/passwd", "9999-12-31T23:59:59-14:00", "\u202egpj.exe"]
    if "enum" in kinds:
        values += ["NOT_A_MEMBER"]
    if kinds & {"integer", "number"}:
        values += [10**40, -(10**40), 2**63, RAW + "1e400", RAW + "-1e400", "12", "abc", 1.5]
    if "boolean" in kinds:
        values += ["maybe", 2]
    if "array" in kinds:
        values += ["x", {"a": 1}, ["\u0000"], [10**40], [[[]]], list(range(1000))]
    if "object" in kinds:
        values += ["x", [1], {"zz_unknown": 1}]
    values += [None, {"nested": {"a": [1]}}, True]
    return values


def dumps(value: Any) -> bytes:
    """JSON text; strings starting with ``RAW`` go in verbatim (1e400, lone surrogates)."""
    text = json.dumps(value)
    for raw in {RAW + '"\\ud800"', RAW + "1e400", RAW + "-1e400"}:
        text = text.replace(json.dumps(raw), raw.removeprefix(RAW))
    return text.encode()


def with_field(body: Any, path: tuple[str, ...], value: Any) -> Any:
    out = dict(body) if isinstance(body, dict) else {}
    target = out
    for key in path[:-1]:
        child = target.get(key)
        target[key] = dict(child) if isinstance(child, dict) else {}
        target = target[key]
    target[path[-1]] = value
    return out


# -- requests ---------------------------------------------------------------------------


@dataclass
class Probe:
    method: str
    url: str
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    label: str = ""


def fill(path: str, ids: dict[str, str], **override: str) -> str:
    for name in [segment[1:-1] for segment in path.split("/") if segment.startswith("{")]:
        path = path.replace("{" + name + "}", override.get(name, ids.get(name, "unknown-id")))
    return path


def baseline(op: Operation, ids: dict[str, str], schemas: Schemas) -> Probe:
    """The operation's body in a valid form (none for DELETE), so that hostile path,
    query and header values are what the handler sees, not a missing body."""
    probe = Probe(op.method, "")
    if op.method == "DELETE":
        return probe
    if "application/json" in op.bodies:
        probe.content = dumps(schemas.example(op.bodies["application/json"]["schema"], ids))
        probe.headers = {"Content-Type": "application/json"}
    elif "application/octet-stream" in op.bodies:
        probe.content = jpeg()
        probe.headers = {"Content-Type": "application/octet-stream"}
    elif "multipart/form-data" in op.bodies:
        probe.content = jpeg_part("file", jpeg(), "photo.jpg") + f"--{BOUNDARY}--\r\n".encode()
        probe.headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return probe


def path_probes(op: Operation, ids: dict[str, str]) -> Iterator[Probe]:
    for param in op.path_params:
        for value in PATH_VALUES:
            url = fill(op.path, ids, **{param["name"]: value})
            yield Probe(op.method, url, label=f"path {param['name']}={value[:20]}")


def query_probes(op: Operation, ids: dict[str, str], rng: random.Random) -> Iterator[Probe]:
    if op.method == "DELETE":
        base = fill(op.path, ids, **{p["name"]: "no-such-id" for p in op.path_params})
    else:
        base = fill(op.path, ids)
    params = [p["name"] for p in op.query_params]
    # An operation without query parameters gets a sample under an unknown name.
    values = QUERY_VALUES if params else rng.sample(QUERY_VALUES, 5)
    params = params or ["unknown_param"]
    for name in params:
        for value in values:
            yield Probe(op.method, f"{base}?{name}={value}", label=f"query {name}={value[:20]}")
        repeated = f"{name}=1&{name}=x&{name}=-1"
        yield Probe(op.method, f"{base}?{repeated}", label=f"query {name} repeated")
    # Every parameter hostile at once, values drawn with the seed.
    mixed = "&".join(f"{name}={rng.choice(QUERY_VALUES)}" for name in params)
    yield Probe(op.method, f"{base}?{mixed}", label="query all hostile")


def header_probes(op: Operation, ids: dict[str, str]) -> Iterator[Probe]:
    base = fill(
        op.path,
        ids,
        **({p["name"]: "no-such-id" for p in op.path_params} if op.method == "DELETE" else {}),
    )
    for param in op.spec.get("parameters", []):
        if param["in"] != "header" or param["name"].lower() == "authorization":
            continue
        for value in HEADER_VALUES:
            label = f"header {param['name']}={value[:20]!r}"
            yield Probe(op.method, base, headers={param["name"]: value}, label=label)


def jpeg_part(name: str, value: bytes, filename: str | None = None) -> bytes:
    return part(name, value, filename, content_type="image/jpeg")


def form_probes(op: Operation, ids: dict[str, str]) -> Iterator[Probe]:
    """Multipart bodies with a real JPEG and one hostile field; raw bodies with hostile
    query parameters named like the form's fields."""
    url = fill(op.path, ids)
    schema = op.bodies.get("multipart/form-data", {}).get("schema")
    if schema is None:
        return
    multipart = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    end = f"--{BOUNDARY}--\r\n".encode()
    fields = [k for k, v in schema.get("properties", {}).items() if v.get("format") != "binary"]
    image = jpeg_part("file", jpeg(), "photo.jpg")
    yield Probe(op.method, url, end, multipart, "form no file")
    yield Probe(op.method, url, jpeg_part("file", b"", "e.jpg") + end, multipart, "form empty file")
    yield Probe(op.method, url, image + image + end, multipart, "form two files")
    yield Probe(op.method, url, image, multipart, "form unterminated")
    for name in fields:
        for value in FORM_VALUES:
            body = jpeg_part(name, value) + image + end
            yield Probe(op.method, url, body, multipart, f"form {name}={value[:20]!r}")
        yield Probe(
            op.method,
            url,
            jpeg_part(name, b"x", "x.jpg") + image + end,
            multipart,
            f"form {name} as file",
        )
    if "application/octet-stream" in op.bodies:
        raw = {"Content-Type": "application/octet-stream"}
        for name in fields:
            for value in ("%00", "%ff%fe", LONG, "NOT_A_MEMBER", ""):
                label = f"raw {name}={value[:20]}"
                yield Probe(op.method, f"{url}?{name}={value}", jpeg(), raw, label)


def body_probes(
    op: Operation, ids: dict[str, str], schemas: Schemas, rng: random.Random
) -> Iterator[Probe]:
    if not op.bodies or op.method == "DELETE":
        return
    url = fill(op.path, ids)
    json_type = {"Content-Type": "application/json"}
    deep_list = b"[" * 10_000 + b"]" * 10_000
    deep_object = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    generic: list[tuple[str, bytes | None, dict[str, str]]] = [
        ("invalid json", b'{"name": ', json_type),
        ("json null", b"null", json_type),
        ("json list", b"[]", json_type),
        ("json list of object", b'[{"name": "x"}]', json_type),
        ("json string", b'"\\u0000"', json_type),
        ("json 1e400", b"1e400", json_type),
        ("json 10**40", str(10**40).encode(), json_type),
        ("deep list", deep_list, json_type),
        ("deep object", deep_object, json_type),
        ("empty json", b"", json_type),
        ("empty no type", None, {}),
        ("not utf-8", b'{"name": "\xff\xfe"}', json_type),
        ("wrong type text", b'{"name": "x"}', {"Content-Type": "text/plain"}),
        ("wrong type form", b"name=x", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("bad multipart", b"--x\r\n\r\n", {"Content-Type": "multipart/form-data; boundary=x"}),
        ("multipart no boundary", b"abc", {"Content-Type": "multipart/form-data"}),
        ("xml", b"<?xml version='1.0'?><a/>", {"Content-Type": "application/xml"}),
    ]
    for label, content, headers in generic:
        yield Probe(op.method, url, content, headers, f"body {label}")
    schema = op.bodies.get("application/json", {}).get("schema")
    if schema is None:
        return
    valid = schemas.example(schema, ids)
    yield Probe(op.method, url, dumps(valid), json_type, "body baseline")
    if isinstance(valid, dict):
        extra = {**valid, "zz_unknown_field": 1}
        yield Probe(op.method, url, dumps(extra), json_type, "body unknown field")
        yield Probe(op.method, url, dumps(valid), {"Content-Type": "text/plain"}, "body as text")
    for path, sub in schemas.fields(schema):
        values = wrong_values(types_of(schemas, sub))
        # NUL, the lone surrogate and the out-of-range numbers always; the rest sampled.
        must = [v for v in values if v in ALWAYS]
        rest = [v for v in values if v not in must]
        for value in must + rng.sample(rest, min(4, len(rest))):
            body = with_field(valid, path, value)
            label = f"body {'.'.join(path)}={str(value)[:20]!r}"
            yield Probe(op.method, url, dumps(body), json_type, label)


# -- the sweep --------------------------------------------------------------------------


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 60, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


async def created(response: httpx.Response, key: str) -> str:
    assert response.status_code in (200, 201, 202), response.text
    return str(response.json()[key])


async def resources(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """Real ids for path parameters and id fields, owned by the member."""
    files = "/api/v1/media/files"
    photo = await created(
        await client.post(
            files,
            headers={**headers, "Content-Type": "application/octet-stream"},
            content=jpeg(),
            params={"file_name": "photo.jpg"},
        ),
        "file_id",
    )
    playlist = await created(
        await client.post(
            "/api/v1/media/playlists",
            headers=headers,
            json={"name": "Sweep", "playlist_type": "MANUAL", "photo_ids": [photo]},
        ),
        "playlist_id",
    )
    frame = await created(
        await client.post(
            "/api/v1/media/frames",
            headers=headers,
            json={"name": "Kitchen", "time_zone": "Europe/Berlin"},
        ),
        "frame_id",
    )
    schedule = await created(
        await client.post(
            "/api/v1/media/schedules",
            headers=headers,
            json={"frame_id": frame, "playlist_id": playlist, "schedule_type": "CONTINUOUS"},
        ),
        "schedule_id",
    )
    cache = await created(
        await client.post(
            "/api/v1/media/cache", headers=headers, json={"frame_id": frame, "photo_id": photo}
        ),
        "cache_id",
    )
    versions = await client.get(f"/api/v1/media/photos/{photo}/versions", headers=headers)
    version = await created(versions, "current_version_id")
    return {
        "file_id": photo,
        "photo_id": photo,
        "playlist_id": playlist,
        "frame_id": frame,
        "schedule_id": schedule,
        "cache_id": cache,
        "version_id": version,
        "user_id": "alice",
        "name": "thumbnail",
        "index": "0",
        "dead_letter_id": "dl_missing",
        "erasure_id": "er_missing",
    }


def problems_in(probe: Probe, response: httpx.Response) -> str | None:
    """Why ``response`` breaks the contract, or None."""
    status = response.status_code
    where = f"{probe.method} {probe.url[:90]} [{probe.label}] -> {status}"
    if status >= 500:
        return f"{where}: {response.text[:200]}"
    if 400 <= status < 500:
        kind = response.headers.get("content-type", "")
        if not kind.startswith("application/problem+json"):
            return f"{where}: content-type {kind!r}"
        if probe.method == "HEAD":
            return None
        try:
            body = response.json()
        except ValueError:
            return f"{where}: body is not JSON: {response.text[:100]}"
        if not isinstance(body, dict) or not body.get("code"):
            return f"{where}: no code in {response.text[:100]}"
    return None


KINDS = ["path", "query", "body"]  # query includes the documented headers


@pytest.mark.parametrize("kind", KINDS)
async def test_no_hostile_input_gets_a_5xx(
    client: httpx.AsyncClient, stack: Stack, kind: str
) -> None:
    app = create_app(stack.settings, stack.state)  # only to list its routes; never started
    spec = (await client.get("/openapi.json")).json()
    schemas = Schemas(spec)
    ops = operations(app, spec)
    principals = {
        "admin": stack.auth("root", ORG, Role.ADMIN),
        "member": stack.auth("alice", ORG, Role.MEMBER),
    }
    ids = await resources(client, principals["member"])
    rng = random.Random(f"{SEED}-{kind}")
    failures: list[str] = []
    sent = 0
    for op in ops:
        if kind == "path":
            probes = list(path_probes(op, ids))
        elif kind == "query":
            probes = list(query_probes(op, ids, rng)) + list(header_probes(op, ids))
        else:
            probes = list(body_probes(op, ids, schemas, rng)) + list(form_probes(op, ids))
        if kind != "body":
            body = baseline(op, ids, schemas)
            for probe in probes:
                probe.content = body.content
                probe.headers = {**body.headers, **probe.headers}
        for probe in probes:
            for who, auth in principals.items():
                response = await client.request(
                    probe.method,
                    probe.url,
                    content=probe.content,
                    headers={**probe.headers, **auth},
                )
                sent += 1
                problem = problems_in(probe, response)
                if response.status_code == 401:  # the tokens are valid: a sweep of nothing
                    problem = f"{probe.method} {probe.url[:90]} [{probe.label}] -> 401"
                if problem is not None:
                    failures.append(f"{who}: {problem}")
    print(f"{kind}: {len(ops)} operations, {sent} requests")
    assert sent > 0
    assert not failures, f"{len(failures)} of {sent} broke the contract:\n" + "\n".join(
        failures[:80]
    )
