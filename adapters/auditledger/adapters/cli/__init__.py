"""The `auditledger` command line: one typer app, commands registered from small modules.

Every command takes --store URL (default: $AUDITLEDGER_STORE or the embedded directory
./audit) and reports a bad URL, an unreachable or unknown store as one clear line, exit 2.
"""

from __future__ import annotations

import typer

from auditledger.adapters.cli import bundle as cli_bundle
from auditledger.adapters.cli import chain as cli_chain
from auditledger.adapters.cli import demo as cli_demo
from auditledger.adapters.cli import erasure as cli_erasure
from auditledger.adapters.cli import landscape as cli_landscape
from auditledger.adapters.cli import payload as cli_payload
from auditledger.adapters.cli import proofs as cli_proofs
from auditledger.adapters.cli import provider as cli_provider
from auditledger.adapters.cli import witness as cli_witness

app = typer.Typer(
    name="auditledger",
    help="An event-sourced audit ledger for pipeline engines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """An event-sourced audit ledger for pipeline engines."""


for module in (
    cli_demo,
    cli_chain,
    cli_proofs,
    cli_erasure,
    cli_landscape,
    cli_payload,
    cli_bundle,
    cli_provider,
    cli_witness,
):
    module.register(app)


def main() -> None:
    app()
