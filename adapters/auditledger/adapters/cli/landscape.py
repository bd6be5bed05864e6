"""The landscape commands: rebuild, catch-up, follow, verify, explain, export.

Each opens the store named by --store (an existing ledger: a missing one is an error, not a
new empty ledger) and the landscape (--landscape URL, default: beside the events). Any store
or landscape problem is one line on stderr, exit 2; `verify` exits 1 when a check fails.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from auditledger.adapters.cli.chain import (
    CheckpointFiles,
    HmacEnvOption,
    KeyFileOption,
    QuorumOption,
    ReadOnlyOption,
    WitnessKeysOption,
    export_checkpoint,
    read_only_wanted,
    run_verify_chain,
)
from auditledger.adapters.cli.common import (
    DEFAULT_STORE,
    StoreOption,
    console,
    err_console,
    fail,
    one_line_errors,
    opened,
)
from auditledger.adapters.cli.payload import payload_records, row_refs
from auditledger.adapters.landscape.read_only import ReadOnlyLandscape
from auditledger.adapters.ledger import Ledger
from auditledger.adapters.storage.settings import StoreSettings
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.domain.errors import ProjectionStuck, UndecodableEvent
from auditledger.projections.queries import BatchView, CallView, Explanation, StateView
from auditledger.projections.verify import Check, VerifyReport

LandscapeOption = Annotated[
    str | None,
    typer.Option(
        "--landscape",
        help="where the landscape tables live (SQLAlchemy URL, e.g. sqlite:///auditor.sqlite3); "
        "default: beside the events",
    ),
]


class Format(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


def register(app: typer.Typer) -> None:
    app.command("rebuild")(rebuild)
    app.command("catch-up")(catch_up)
    app.command("follow")(follow)
    app.command("verify")(verify)
    app.command("explain")(explain)
    app.command("export")(export)


def existing_ledger(store: str, landscape: str | None = None) -> AbstractContextManager[Ledger]:
    """Open a ledger that already exists; every failure is one line and exit 2."""
    return opened(store, landscape, existing=True)


def _landscape_of(
    store: str, landscape: str | None, read_only: bool
) -> AbstractContextManager[Ledger | ReadOnlyLandscape]:
    return read_only_landscape(store, landscape) if read_only else existing_ledger(store, landscape)


@contextmanager
def read_only_landscape(store: str, landscape: str | None) -> Iterator[ReadOnlyLandscape]:
    """The store read through read-only URIs, its landscape copied into memory; every
    failure is one line and exit 2."""
    with one_line_errors():
        settings = StoreSettings.parse(store)
        if settings.kind != "sqlite":
            raise fail(
                "--read-only verify and explain read a SQLite store directory (a copy of "
                "one); on PostgreSQL, connect as a role that cannot write"
            )
        if landscape is not None and not landscape.startswith("sqlite:///"):
            raise fail("--read-only takes a SQLite --landscape (sqlite:///FILE) or none")
        landscape_file = (
            Path(landscape[len("sqlite:///") :])
            if landscape is not None
            else settings.sqlite_file("landscape")
        )
        with (
            RawLog.open(store, read_only=True) as log,
            ReadOnlyLandscape(log, landscape_file) as view,
        ):
            yield view


class _Rate(ProgressColumn):
    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} events/s")


def rebuild(
    store: StoreOption = DEFAULT_STORE,
    landscape: LandscapeOption = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="stop at this log position, or at the last event at/before this "
            "ISO 8601 timestamp (time travel)"
        ),
    ] = None,
    chunk_size: Annotated[int, typer.Option(min=1)] = 2000,
) -> None:
    """Rebuild the landscape from the event log and swap it in atomically."""
    with existing_ledger(store, landscape) as ledger:
        last = ledger.log_position()
        target = int(until) if until is not None and until.strip().isdigit() else last
        columns = (BarColumn(), MofNCompleteColumn(), _Rate(), TimeElapsedColumn())
        with Progress(
            "[progress.description]{task.description}", *columns, console=console, transient=False
        ) as bar:
            task = bar.add_task("rebuild", total=min(target, last) or None)

            def advance(_count: int, position: int) -> None:
                bar.update(task, completed=position)

            result = ledger.rebuild(until, chunk_size=chunk_size, progress=advance)
        summary = Table(title="rebuild", show_header=False)
        summary.add_row("events applied", f"{result.events:,}")
        summary.add_row("position", f"{result.position:,}")
        summary.add_row("wall time", f"{result.seconds:.2f} s")
        rate = result.events / result.seconds if result.seconds > 0 else 0.0
        summary.add_row("events/s", f"{rate:,.0f}")
        for table, count in result.rows.items():
            summary.add_row(f"rows in {table}", f"{count:,}")
        console.print(summary)


def catch_up(
    store: StoreOption = DEFAULT_STORE,
    landscape: LandscapeOption = None,
    skip: Annotated[
        int | None,
        typer.Option(
            "--skip",
            metavar="POSITION",
            min=1,
            help="pass over the event at this log position, the one catch-up stops at "
            "(recorded with --reason; the event stays in the log; verify lists it)",
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="why the event is skipped (with --skip)")
    ] = None,
) -> None:
    """Apply the events recorded since the landscape's position."""
    if (skip is None) != (reason is None):
        raise fail("--skip POSITION and --reason TEXT go together")
    with existing_ledger(store, landscape) as ledger:
        if skip is not None and reason is not None:
            _skip(ledger, skip, reason)
        applied = ledger.catch_up()
        console.print(
            f"applied {applied} events; landscape at position {ledger.landscape_position()}"
        )


def _skip(ledger: Ledger, position: int, reason: str) -> None:
    with suppress(ProjectionStuck, UndecodableEvent):
        ledger.catch_up()  # up to the event that stops it
    skipped = ledger.skip_event(position, reason=reason)
    console.print(
        f"skipped position {skipped.position} ({skipped.topic}): {skipped.reason}; "
        "the event stays in the log and every verify lists the skip",
        highlight=False,
    )


def follow(
    store: StoreOption = DEFAULT_STORE,
    landscape: LandscapeOption = None,
    poll: Annotated[float, typer.Option(help="seconds between polls", min=0.01)] = 1.0,
) -> None:
    """Keep the landscape current until interrupted (PostgreSQL: woken by NOTIFY)."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with existing_ledger(store, landscape) as ledger:
        console.print(f"following {ledger.url} (Ctrl-C to stop)", highlight=False)

        def report(count: int, position: int) -> None:
            console.print(f"applied {count} events; position {position}", highlight=False)

        applied = ledger.follow(lambda: stopping, poll_seconds=poll, progress=report)
        console.print(f"stopped after applying {applied} events", highlight=False)


def verify(
    store: StoreOption = DEFAULT_STORE,
    landscape: LandscapeOption = None,
    diff: Annotated[
        bool, typer.Option("--diff/--no-diff", help="compare with a fresh rebuild")
    ] = True,
    catch_up_first: Annotated[
        bool, typer.Option("--catch-up/--no-catch-up", help="apply new events first")
    ] = False,
    chain: Annotated[
        bool, typer.Option("--chain", help="also recompute the hash chain (tamper evidence)")
    ] = False,
    checkpoint: CheckpointFiles = None,
    key_file: KeyFileOption = None,
    hmac_key_env: HmacEnvOption = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="a flagged finding (landscape behind the log, a skip) fails too"
        ),
    ] = False,
    read_only: ReadOnlyOption = False,
    witness_keys: WitnessKeysOption = None,
    quorum: QuorumOption = 1,
) -> None:
    """Check the landscape's invariants; exit 0 only if every check passes.

    A landscape behind the log and skipped events are flagged, not failed, unless --strict.
    --read-only: nothing in the store changes; the landscape is checked in a copy in memory
    (built from the log when the store has none)."""
    read_only = read_only_wanted(store, read_only)
    chain_code = 0
    if chain or checkpoint:  # first: it reads raw bytes, so it reports even undecodable events
        chain_code = run_verify_chain(
            store,
            checkpoint or [],
            None,
            key_file,
            hmac_key_env,
            read_only=read_only,
            witness_keys=witness_keys or [],
            quorum=quorum,
        )
    with _landscape_of(store, landscape, read_only) as ledger:
        unbuilt = isinstance(ledger, ReadOnlyLandscape) and not ledger.had_landscape
        if catch_up_first or unbuilt:
            try:
                ledger.catch_up()
            except (ProjectionStuck, UndecodableEvent) as stuck:  # a finding, reported below
                err_console.print(f"catch-up stopped: {stuck}", highlight=False, soft_wrap=True)
        report = ledger.verify(diff=diff)
    print_report(report, strict=strict)
    if not report.passed or (strict and report.flagged) or chain_code != 0:
        raise typer.Exit(1)


def print_report(report: VerifyReport, title: str = "verify", *, strict: bool = False) -> None:
    table = Table(title=title)
    table.add_column("check")
    table.add_column("result")
    table.add_column("checked", justify="right")
    table.add_column("failed", justify="right")
    for check in report.checks:
        table.add_row(
            check.name,
            _result(check, strict),
            f"{check.checked:,}",
            f"{check.failed:,}",
        )
    console.print(table)
    for check in report.checks:
        _print_examples(check)


def _result(check: Check, strict: bool) -> str:
    if not check.passed or (strict and check.flagged):
        return "[bold red]FAIL[/]"
    return "[yellow]FLAGGED[/]" if check.flagged else "[green]pass[/]"


def _print_examples(check: Check) -> None:
    colour = "yellow" if check.passed else "red"
    for example in check.examples:
        console.print(f"  [{colour}]{check.name}[/]: {example}", highlight=False)


def explain(
    state: Annotated[str | None, typer.Option("--state", help="a node state id")] = None,
    token: Annotated[str | None, typer.Option("--token", help="a token id")] = None,
    run: Annotated[str | None, typer.Option("--run", help="a run id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON")] = False,
    store: StoreOption = DEFAULT_STORE,
    landscape: LandscapeOption = None,
    read_only: ReadOnlyOption = False,
) -> None:
    """The lineage of a state, token or run: states, calls, payloads, batches."""
    if sum(v is not None for v in (state, token, run)) != 1:
        raise fail("name exactly one of --state ID, --token ID, --run ID")
    with _landscape_of(store, landscape, read_only_wanted(store, read_only)) as ledger:
        found = ledger.explain(state_id=state, token_id=token, run_id=run)
    if as_json:
        sys.stdout.write(found.model_dump_json(indent=2) + "\n")
        return
    console.print(_tree(found))


def _tree(found: Explanation) -> Tree:
    root = Tree("lineage", hide_root=True)
    for run in found.runs:
        branch = root.add(f"[bold]run {run.run_id}[/] {run.status} config {run.config_hash[:12]}")
        for op in run.operations:
            node = branch.add(
                f"operation {op.operation_type} at {op.node_id} {_status(op.status)}"
                f"{_ms(op.duration_ms)} [dim]{op.operation_id}[/]"
            )
            _calls(node, op.calls)
        for state in run.states:
            _state(branch, state)
        for batch in run.batches:
            _batch(branch, batch)
    return root


def _state(branch: Tree, state: StateView) -> None:
    node = branch.add(
        f"step {state.step_index} [bold]{state.node_id}[/] token {state.token_id} "
        f"attempt {state.attempt} {_status(state.status)}{_ms(state.duration_ms)} "
        f"[dim]{state.state_id}[/]"
    )
    for name, ref, found in (
        ("input", state.input_hash, state.input_payload),
        ("output", state.output_hash, state.output_payload),
        ("context", state.context_hash, state.context_payload),  # once the column exists
    ):
        if ref is not None:
            node.add(f"{name} {_payload(ref, found)}")
    if state.error_json:
        node.add(f"[red]error[/] {state.error_json}")
    _calls(node, state.calls)
    for batch in state.batches:
        _batch(node, batch)


def _payload(ref: str, found: str | None) -> str:
    """A payload ref in full (for `auditledger payload REF`) and whether its bytes are there."""
    return f"{ref} [dim]({found})[/]"


def _calls(node: Tree, calls: list[CallView]) -> None:
    for call in calls:
        _call(node, call)


def _call(node: Tree, call: CallView, title: str = "call") -> None:
    line = node.add(
        f"{title} {call.call_index} {call.call_type} {_status(call.status)}"
        f"{_ms(call.latency_ms)} [dim]{call.call_id}[/]"
    )
    line.add(f"request {_payload(call.request_ref, call.request_payload)}")
    if call.response_ref is not None:
        line.add(f"response {_payload(call.response_ref, call.response_payload)}")
    if call.summary is not None:
        line.add(_summary(call.summary))
    if call.error_json:
        line.add(f"[red]error[/] {call.error_json}")


def _summary(summary: Any) -> str:
    """The llm summary in one line: model, tokens, tier, and whether a batch delivered it."""
    if not isinstance(summary, dict):
        return f"summary {json.dumps(summary)}"
    tokens = "/".join(
        "?" if summary.get(k) is None else str(summary[k])
        for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    )
    parts = [
        f"llm {summary.get('model') or '?'}",
        f"tokens in/out/total {tokens}",
        f"tier {summary.get('service_tier') or '-'}",
    ]
    if summary.get("via_batch"):
        parts.append(f"via batch ({summary.get('custom_id')})")
    return ", ".join(parts)


def _batch(node: Tree, batch: BatchView) -> None:
    members = ", ".join(f"{m.ordinal}:{m.token_id}" for m in batch.members)
    line = node.add(
        f"batch {batch.batch_id} at {batch.aggregation_node_id} {_status(batch.status)} "
        f"members [{members}]"
    )
    ran = batch.executed_by
    if ran is not None:
        line.add(
            f"executed by step {ran.step_index} {ran.node_id} token {ran.token_id} "
            f"attempt {ran.attempt} {_status(ran.status)} [dim]{ran.state_id}[/]"
        )
    for member in batch.members:
        if member.result_call is not None:
            _call(
                line, member.result_call, title=f"member {member.ordinal} {member.token_id}: call"
            )


def _status(status: str) -> str:
    colour = {"completed": "green", "success": "green", "failed": "red", "error": "red"}
    return f"[{colour.get(status, 'yellow')}]{status}[/]"


def _ms(value: float | None) -> str:
    return "" if value is None else f" {value:,.1f} ms"


def export(
    run: Annotated[str, typer.Option("--run", help="the run id")],
    format: Annotated[Format, typer.Option("--format")] = Format.jsonl,
    with_payloads: Annotated[
        bool,
        typer.Option(
            "--with-payloads",
            help="also the bytes of every payload the rows refer to (and of the HTTP bodies "
            "their calls name), base64, as table 'payloads'",
        ),
    ] = False,
    store: StoreOption = DEFAULT_STORE,
    landscape: LandscapeOption = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="write a run bundle to this directory instead (events with inclusion proofs, "
            "rows, payloads with --with-payloads, a manifest): check it with verify-bundle",
        ),
    ] = None,
    key_file: KeyFileOption = None,
) -> None:
    """Write a run's landscape rows to stdout (jsonl: {"table", "row"}; csv: table + columns).

    Both formats carry the same records: the run's rows, table by table, then the sealed log
    head (table 'checkpoint'; not for memory://), then with --with-payloads one 'payloads'
    record per ref (ref, status, size, base64). With --bundle DIR: a run bundle instead
    (docs/tamper-evidence.md, "Run bundles"), signed with --key-file."""
    with existing_ledger(store, landscape) as ledger:
        if bundle is not None:
            from auditledger.adapters.cli.bundle import export_bundle

            export_bundle(ledger, run, store, bundle, key_file, with_payloads)
            return
        records = _records(ledger, run, store, with_payloads)
        if format is Format.jsonl:
            for table, row in records:
                sys.stdout.write(json.dumps({"table": table, "row": row}) + "\n")
            return
        writer = csv.DictWriter(sys.stdout, fieldnames=_csv_columns(), restval="")
        for n, (table, row) in enumerate(records):
            if n == 0:
                writer.writeheader()
            writer.writerow({"table": table, **_csv_row(table, row)})


def _records(
    ledger: Ledger, run: str, store: str, with_payloads: bool
) -> Iterator[tuple[str, dict[str, Any]]]:
    refs: dict[str, None] = {}
    calls: set[str] = set()
    for table, row in ledger.export_rows(run):
        if with_payloads:
            found = row_refs(table, row)
            refs.update(dict.fromkeys(found))
            if table == "calls":
                calls.update(found)
        yield table, {k: _plain(v) for k, v in row.items()}
    head = export_checkpoint(store)
    if head is not None:
        yield "checkpoint", head
    if with_payloads:
        for record in payload_records(ledger, refs, calls):
            yield "payloads", record


CSV_EXTRA = ("checkpoint_json", "ref", "size", "base64")
"""CSV columns beyond the landscape's: the checkpoint (its JSON), a payload's (its status
goes in `status`)."""


def _csv_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    if table == "checkpoint":
        return {"checkpoint_json": json.dumps(row, sort_keys=True)}
    return row


def _csv_columns() -> list[str]:
    from auditledger.projections.tables import LANDSCAPE_TABLES

    names = ["table"]
    for table in LANDSCAPE_TABLES:
        names += [c.name for c in table.columns if c.name not in names]
    return names + [c for c in CSV_EXTRA if c not in names]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
