"""FastAPI dependencies: the request boundary (one unit of work) and the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.db.uow import unit_of_work
from media_service.errors import Unauthorized
from media_service.state import ServiceState


async def service_state(request: Request) -> ServiceState:
    """The process's state. Dependencies are ``async def`` even when they do not await:
    FastAPI runs a plain ``def`` dependency in a worker thread, a hop per request."""
    return cast(ServiceState, request.app.state.media)


StateDep = Annotated[ServiceState, Depends(service_state)]


async def db_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    async with unit_of_work(state.sessions) as session:
        yield session


# scope="function": the commit happens when the endpoint returns, before the response
# (and before a streamed body, so no transaction stays open while bytes flow).
SessionDep = Annotated[AsyncSession, Depends(db_session, scope="function")]


async def optional_principal(request: Request, state: StateDep) -> Principal | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return await state.tokens.verify(token.strip())


async def current_principal(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    if principal is None:
        raise Unauthorized()
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]
