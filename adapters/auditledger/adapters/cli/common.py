"""What every CLI command shares: the --store option and turning LedgerErrors into one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from auditledger.adapters.ledger import Ledger
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
def opened(store: str, landscape: str | None = None) -> Iterator[Ledger]:
    with one_line_errors():
        ledger = Ledger.open(store, landscape=landscape)
        try:
            yield ledger
        finally:
            ledger.close()
