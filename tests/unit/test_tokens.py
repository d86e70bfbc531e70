"""Bearer tokens: HS256 with the service secret, and RS256 from a real JWKS endpoint."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from media_service.auth.principal import Role
from media_service.auth.tokens import TokenService
from media_service.errors import Unauthorized

SECRET = "s" * 48


async def test_minted_token_round_trips() -> None:
    tokens = TokenService(SECRET, issuer="media-service")
    token = tokens.mint("alice", "org1", [Role.TEACHER, Role.ADMIN], frame_id="frame_1")
    principal = await tokens.verify(token)
    assert principal.subject == "alice" and principal.organization_id == "org1"
    assert principal.roles == {Role.TEACHER, Role.ADMIN} and principal.frame_id == "frame_1"
    assert principal.frame_generation == 0
    later = tokens.mint("f", "org1", [Role.FRAME], frame_id="frame_1", frame_generation=3)
    assert (await tokens.verify(later)).frame_generation == 3


async def test_a_verified_token_is_remembered_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = TokenService(SECRET, issuer="media-service")
    token = tokens.mint("alice", "org1", [Role.TEACHER], ttl=timedelta(seconds=2))
    first = await tokens.verify(token)
    decodes: list[str] = []
    decode = tokens._decode

    def counted(*args: Any) -> dict[str, Any]:
        decodes.append("d")
        return decode(*args)

    monkeypatch.setattr(tokens, "_decode", counted)
    assert await tokens.verify(token) is first and decodes == []  # taken at its word
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(Unauthorized):  # another string is verified, not looked up
        await tokens.verify(tampered)
    assert decodes == ["d"]
    await asyncio.sleep(2.1)  # past its exp: remembered no longer, refused as expired
    with pytest.raises(Unauthorized, match="expired"):
        await tokens.verify(token)


@pytest.mark.parametrize(
    ("claims", "secret", "message"),
    [
        ({"sub": "a", "org": "o", "roles": []}, "x" * 48, "invalid token"),  # other secret
        ({"sub": "a", "org": "o", "exp_in": -10}, SECRET, "expired"),
        ({"org": "o"}, SECRET, "invalid token"),  # no sub
        ({"sub": "a"}, SECRET, "org"),
        ({"sub": "a", "org": "o", "roles": "admin"}, SECRET, "roles"),
        ({"sub": "a", "org": "o", "iss": "someone-else"}, SECRET, "invalid token"),
        ({"sub": "a", "org": "o", "frame_gen": "1"}, SECRET, "frame_gen"),
        ({"sub": "a", "org": "o", "frame_gen": -1}, SECRET, "frame_gen"),
        ({"sub": "a", "org": "o", "frame_gen": True}, SECRET, "frame_gen"),
    ],
)
async def test_invalid_tokens_are_refused(
    claims: dict[str, object], secret: str, message: str
) -> None:
    now = datetime.now(UTC)
    body = {
        "iss": "media-service",
        "exp": now + timedelta(seconds=int(claims.pop("exp_in", 60))),
        **claims,
    }  # type: ignore[call-overload]
    token = jwt.encode(body, secret, algorithm="HS256")
    with pytest.raises(Unauthorized, match=message):
        await TokenService(SECRET, issuer="media-service").verify(token)


async def test_unknown_roles_are_ignored_and_alg_none_refused() -> None:
    tokens = TokenService(SECRET, issuer="media-service")
    body = {
        "sub": "a",
        "org": "o",
        "roles": ["member", "superuser"],
        "iss": "media-service",
        "exp": datetime.now(UTC) + timedelta(minutes=1),
    }
    principal = await tokens.verify(jwt.encode(body, SECRET, algorithm="HS256"))
    assert principal.roles == {Role.MEMBER}
    unsigned = jwt.encode(body, None, algorithm="none")
    with pytest.raises(Unauthorized):
        await tokens.verify(unsigned)
    with pytest.raises(Unauthorized, match="too long"):
        await tokens.verify("a" * 10_000)


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    document = json.dumps(
        {"keys": [{**jwk, "kid": "idp-1", "use": "sig", "alg": "RS256"}]}
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json", key
    finally:
        server.shutdown()


async def test_tokens_from_a_jwks_endpoint(jwks_server: tuple[str, rsa.RSAPrivateKey]) -> None:
    url, key = jwks_server
    tokens = TokenService(None, issuer="https://idp.example", jwks_url=url)
    body = {
        "sub": "bob",
        "org": "o2",
        "roles": ["student"],
        "iss": "https://idp.example",
        "exp": datetime.now(UTC) + timedelta(minutes=5),
    }
    token = jwt.encode(body, key, algorithm="RS256", headers={"kid": "idp-1"})
    principal = await tokens.verify(token)
    assert (principal.subject, principal.organization_id, principal.roles) == (
        "bob",
        "o2",
        {Role.STUDENT},
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(body, other, algorithm="RS256", headers={"kid": "idp-1"})
    with pytest.raises(Unauthorized):
        await tokens.verify(forged)
    hs = jwt.encode(body, "guess" * 10, algorithm="HS256")
    with pytest.raises(Unauthorized):  # no HS secret configured: HS256 must not be accepted
        await tokens.verify(hs)


@pytest.mark.parametrize("claim", ["sub", "org"])
async def test_control_characters_in_identity_claims_are_refused(claim: str) -> None:
    body = {
        "sub": "a",
        "org": "o",
        "iss": "media-service",
        "exp": datetime.now(UTC) + timedelta(minutes=1),
        claim: "x\x00y",
    }
    with pytest.raises(Unauthorized, match=claim):
        await TokenService(SECRET, issuer="media-service").verify(jwt.encode(body, SECRET))
