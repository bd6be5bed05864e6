"""Database errors -> one StoreError line: what was being done, where, and the driver's reason.

Every room that touches a database (the payload store, the raw log, the landscape) translates
through `store_errors`, so a caller catches one type, sees one line, and never a password:
- a URL SQLAlchemy cannot use: "<what> URL '<url>': <reason>";
- SQLAlchemy, DBAPI, sqlite3 and psycopg errors: "<what> at <url>: <first line of the reason>".
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from auditledger.domain.errors import StoreError


def driver_errors() -> tuple[type[Exception], ...]:
    """SQLAlchemy's, sqlite3's and, once something has loaded it, psycopg's errors (psycopg is
    not imported here: a SQLite-only process never pays for loading it)."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return (SQLAlchemyError, sqlite3.Error)
    return (SQLAlchemyError, sqlite3.Error, psycopg.Error)


@contextmanager
def store_errors(what: str, url: str | URL) -> Iterator[None]:
    """Inside: a database error becomes one StoreError naming `what` and `url` (password hidden)."""
    try:
        yield
    except (ArgumentError, NoSuchModuleError) as error:
        raise StoreError(f"{what} URL {shown(url)!r}: {first_line(error)}") from None
    except Exception as error:
        if not isinstance(error, driver_errors()):
            raise
        reason = getattr(error, "orig", None) or error
        raise StoreError(f"{what} at {shown(url)}: {first_line(reason)}") from None


def shown(url: str | URL) -> str:
    """The URL as it may be printed: the password, if any, hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return str(url)


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
