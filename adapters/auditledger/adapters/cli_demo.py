"""`auditledger demo`: record a small synthetic pipeline run and show that it holds up."""

from __future__ import annotations

from collections import Counter

import typer
from rich.table import Table

from .cli_common import DEFAULT_STORE, StoreOption, console, opened
from .cli_landscape import print_report


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(store: StoreOption = DEFAULT_STORE) -> None:
    """Record a synthetic pipeline run in the store (default ./audit) and summarise it."""
    from .demo import record_demo_run  # the demo drives the openai SDK: import it on use

    with opened(store) as ledger:
        run = record_demo_run(ledger)
        counts = _count_events(ledger)
        table = Table(title="auditledger demo")
        table.add_column("fact")
        table.add_column("count", justify="right")
        for label, topic_part in (
            ("runs", "Run.RunStarted"),
            ("node states", "NodeState.StateOpened"),
            ("calls", "CallRecorded"),
            ("operations", "Operation.OperationStarted"),
            ("batches", "Batch.BatchCreated"),
            ("batch members", "Batch.BatchMemberAdded"),
        ):
            table.add_row(label, str(sum(n for t, n in counts.items() if topic_part in t)))
        console.print(table)
        console.print(f"run: {run.run_id}\nstore: {ledger.url}")
        ledger.catch_up()
        report = ledger.verify()
        print_report(report, title="the landscape's invariants (auditledger verify)")
        console.print(
            f"try: auditledger explain --run {run.run_id} --store {ledger.url}", highlight=False
        )
        if not report.passed:
            raise typer.Exit(1)


def _count_events(ledger) -> Counter[str]:  # type: ignore[no-untyped-def]
    counts: Counter[str] = Counter()
    start = 1
    while True:
        notes = ledger.app.recorder.select_notifications(start=start, limit=1000)
        if not notes:
            return counts
        counts.update(n.topic for n in notes)
        start = notes[-1].id + 1
