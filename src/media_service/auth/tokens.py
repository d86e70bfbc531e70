"""JWT bearer tokens: HS256 with the configured secret, or keys from a JWKS URL.

Claims: ``sub`` (user id), ``org`` (organization), ``roles`` (list of :class:`Role`),
``frame_id`` for frame devices, ``exp`` and ``iss``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

import jwt

from media_service.auth.principal import Principal, Role
from media_service.errors import Unauthorized
from media_service.recent import RecentValues

HS_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = ["RS256", "ES256", "EdDSA"]
MAX_TOKEN_LENGTH = 8192
# A verified token is taken at its word again for this long (never past its ``exp``): a
# frame or a page sends the same token with every request, and checking its signature
# was a tenth of a stored rendition's CPU. Bounds how long a key removed from the JWKS
# still vouches for the tokens it signed.
VERIFIED_FOR_SECONDS = 300.0


class TokenService:
    """Mints and verifies bearer tokens."""

    def __init__(
        self,
        secret: str | None,
        *,
        issuer: str,
        audience: str | None = None,
        jwks_url: str | None = None,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self._verified: RecentValues[Principal] = RecentValues(VERIFIED_FOR_SECONDS, 10_000)

    def mint(
        self,
        subject: str,
        organization_id: str,
        roles: list[Role],
        *,
        ttl: timedelta = timedelta(days=30),
        frame_id: str | None = None,
        frame_generation: int = 0,
    ) -> str:
        """A signed HS256 token for these claims."""
        if not self._secret:
            raise RuntimeError("no JWT secret configured: tokens can only be verified via JWKS")
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": subject,
            "org": organization_id,
            "roles": [role.value for role in roles],
            "iss": self._issuer,
            "iat": now,
            "exp": now + ttl,
        }
        if frame_id:
            claims["frame_id"] = frame_id
            claims["frame_gen"] = frame_generation
        if self._audience:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._secret, algorithm="HS256")

    async def verify(self, token: str) -> Principal:
        """The principal a token speaks for; :class:`Unauthorized` when it is not valid."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized("token too long")
        principal = self._verified.get(token)
        if principal is not None:
            return principal
        claims = await self._verified_claims(token)
        principal = _principal_from_claims(claims)
        left = float(claims["exp"]) - time.time()
        self._verified.put(token, principal, min(left, VERIFIED_FOR_SECONDS))
        return principal

    async def _verified_claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") in HS_ALGORITHMS and self._secret:
                claims = self._decode(token, self._secret, HS_ALGORITHMS)
            elif self._jwks is not None:
                key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                claims = self._decode(token, key.key, JWKS_ALGORITHMS)
            else:
                raise Unauthorized("token algorithm not accepted")
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        return claims

    def _decode(self, token: str, key: Any, algorithms: list[str]) -> dict[str, Any]:
        options = {"require": ["sub", "exp"], "verify_aud": self._audience is not None}
        return jwt.decode(
            token,
            key,
            algorithms=algorithms,
            issuer=self._issuer,
            audience=self._audience,
            options=options,  # type: ignore[arg-type]
        )


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    subject, org, raw_roles = claims.get("sub"), claims.get("org"), claims.get("roles", [])
    if not _is_identifier(subject, 128):
        raise Unauthorized("token has no valid 'sub' claim")
    if not _is_identifier(org, 64):
        raise Unauthorized("token has no valid 'org' claim")
    if not isinstance(raw_roles, list) or not all(isinstance(r, str) for r in raw_roles):
        raise Unauthorized("token 'roles' claim must be a list of strings")
    known = {role.value for role in Role}
    roles = frozenset(Role(r) for r in raw_roles if r in known)
    frame_id = claims.get("frame_id")
    generation = claims.get("frame_gen", 0)  # tokens from before revocation existed: 0
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise Unauthorized("token 'frame_gen' claim must be a whole number")
    return Principal(
        subject=subject,
        organization_id=org,
        roles=roles,
        frame_id=frame_id if isinstance(frame_id, str) else None,
        frame_generation=generation,
    )


def _is_identifier(value: object, max_length: int) -> TypeGuard[str]:
    """A non-empty printable string: ids end up in SQL, storage and logs."""
    return isinstance(value, str) and 0 < len(value) <= max_length and value.isprintable()
