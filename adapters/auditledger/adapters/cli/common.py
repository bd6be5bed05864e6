"""What every CLI command shares: the --store option and turning LedgerErrors into one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from eventsourcing.persistence import PersistenceError
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from auditledger.adapters.ledger import Ledger
from auditledger.adapters.storage.settings import StoreSettings
from auditledger.domain.errors import LedgerError

console = Console()
err_console = Console(stderr=True)

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="AUDITLEDGER_STORE",
        help="memory://, sqlite:///DIRECTORY or postgresql://user@host:port/db",
    ),
]
DEFAULT_STORE = "sqlite:///audit"


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A LedgerError in the block ends the command with its message on one line, exit 2."""
    try:
        yield
    except LedgerError as error:
        raise fail(str(error)) from None


@contextmanager
def opened(store: str, landscape: str | None = None, *, existing: bool = False) -> Iterator[Ledger]:
    """The one way a command opens a ledger. existing=True: it must already exist (a missing
    one is an error, not a new empty ledger), and store errors in the block are one line."""
    try:
        if existing:
            _must_exist(StoreSettings.parse(store))
        ledger = Ledger.open(store, landscape=landscape)
    except LedgerError as error:
        raise fail(one_line(error) if existing else str(error)) from None
    try:
        yield ledger
    except LedgerError as error:
        raise fail(one_line(error) if existing else str(error)) from None
    except (PersistenceError, SQLAlchemyError) as error:
        if not existing:
            raise
        raise fail(one_line(error)) from None
    finally:
        ledger.close()


def _must_exist(settings: StoreSettings) -> None:
    if settings.kind == "sqlite":
        events = settings.sqlite_file("events")
        if not events.is_file():
            raise fail(
                f"no ledger at {settings.url}: {events} does not exist "
                "(check --store, or record something first, e.g. auditledger demo)"
            )
    if settings.kind == "postgresql":
        _reachable(settings)


def _reachable(settings: StoreSettings) -> None:
    """A missing PostgreSQL database is named at once, not after the pool's retries."""
    import psycopg

    url = make_url(settings.postgres_url()).set(drivername="postgresql")
    try:
        psycopg.connect(url.render_as_string(hide_password=False), connect_timeout=5).close()
    except psycopg.Error as error:
        raise fail(f"no ledger at {settings.url}: {one_line(error)}") from None


def one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
