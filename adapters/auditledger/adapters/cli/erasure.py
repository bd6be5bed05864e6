"""`auditledger erase (--run R | --token T) --reason TEXT`: a subject's payload bytes deleted.

Deletes the payload and attachment bytes the subject's events name (bytes another subject
names stay), records ErasureRecorded, and leaves every event, hash and chain link (so every
checkpoint and proof) valid; verify and verify-chain then count the payloads as erased.
Records younger than the store's minimum retention (?retention_days=, default 183) are
refused unless --override-retention (recorded in the event). Exit 2 on a refusal.
"""

from __future__ import annotations

from typing import Annotated

import typer

from auditledger.adapters.cli.common import DEFAULT_STORE, StoreOption, console, fail, opened


def register(app: typer.Typer) -> None:
    app.command("erase")(erase)


def erase(
    reason: Annotated[str, typer.Option("--reason", help="why (recorded with the erasure)")],
    run: Annotated[
        str | None, typer.Option("--run", help="a run: its config, states, calls, batches")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", help="a token id: its states and their calls (with --run: in it)"),
    ] = None,
    override_retention: Annotated[
        bool,
        typer.Option(
            "--override-retention",
            help="erase records younger than the store's minimum retention (recorded)",
        ),
    ] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Delete the payload bytes of a run or a token; hashes, events and the chain stay."""
    if run is None and token is None:
        raise fail("name what to erase: --run RUN_ID, --token TOKEN_ID, or both")
    with opened(store, existing=True) as ledger:
        result = ledger.erase(run, token, reason=reason, override_retention=override_retention)
    overridden = " (retention overridden)" if result.retention_overridden else ""
    console.print(
        f"erased {result.payloads_erased} payload(s), {result.bytes_erased} bytes, of "
        f"{result.subject}{overridden}; kept {result.kept} named by another subject; "
        f"erasure {result.erasure_id}; hashes, events and the chain stay",
        highlight=False,
        soft_wrap=True,
    )
