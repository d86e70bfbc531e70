"""Which database errors are answered 503 ``database_unavailable`` (``problems.py``)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from media_service.problems import database_unavailable


class ServerError(Exception):
    """An error as the asyncpg adapter raises it: with the server's SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def wrapped(sqlstate: str) -> DBAPIError:
    return DBAPIError("SELECT 1", None, ServerError(sqlstate))


@pytest.mark.parametrize("sqlstate", ["57P03", "57P01", "53300", "08006", "08001"])
def test_a_server_starting_stopping_full_or_unreachable_is_unavailable(sqlstate: str) -> None:
    assert database_unavailable(wrapped(sqlstate))


@pytest.mark.parametrize("sqlstate", ["23505", "42601", "22P02", "40001"])
def test_a_wrong_statement_or_a_conflict_is_not(sqlstate: str) -> None:
    assert not database_unavailable(wrapped(sqlstate))
