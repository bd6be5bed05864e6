"""What every CLI command shares: the --store option and turning LedgerErrors into one line."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from auditledger.domain.errors import LedgerError

from .ledger import Ledger

T = TypeVar("T")
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
def opened(store: str, landscape: str | None = None) -> Iterator[Ledger]:
    try:
        ledger = Ledger.open(store, landscape=landscape)
    except LedgerError as error:
        raise fail(str(error)) from None
    try:
        yield ledger
    except LedgerError as error:
        raise fail(str(error)) from None
    finally:
        ledger.close()


def guarded(action: Callable[[], T]) -> T:
    try:
        return action()
    except LedgerError as error:
        raise fail(str(error)) from None


def store_default() -> str:
    return os.environ.get("AUDITLEDGER_STORE", DEFAULT_STORE)
