"""`auditledger demo`: record a small synthetic pipeline run and show that it holds up."""

from __future__ import annotations

from collections import Counter

import typer
from rich.table import Table

from auditledger.adapters.cli.common import DEFAULT_STORE, StoreOption, console, opened
from auditledger.adapters.cli.landscape import print_report


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(store: StoreOption = DEFAULT_STORE) -> None:
    """Record a synthetic pipeline run in the store (default ./audit) and summarise it."""
    from auditledger.adapters.demo.pipeline import (
        record_demo_run,  # the demo drives the openai SDK: import it on use
    )

    with opened(store) as ledger:
        run = record_demo_run(ledger)
        # this run's landscape rows, table by table (export_rows catches up first)
        counts = Counter(table for table, _ in ledger.export_rows(run.run_id))
        table = Table(title="auditledger demo")
        table.add_column("fact")
        table.add_column("count", justify="right")
        for name in ("runs", "node_states", "calls", "operations", "batches", "batch_members"):
            table.add_row(name.replace("_", " "), str(counts[name]))
        console.print(table)
        console.print(f"run: {run.run_id}\nstore: {ledger.url}")
        report = ledger.verify()
        print_report(report, title="the landscape's invariants (auditledger verify)")
        console.print(
            f"try: auditledger explain --run {run.run_id} --store {ledger.url}", highlight=False
        )
        if not report.passed:
            raise typer.Exit(1)
