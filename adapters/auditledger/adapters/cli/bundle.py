"""Run bundles: `export --run R --bundle DIR` writes one (see landscape.export), `verify-bundle
DIR` checks one with no store (docs/tamper-evidence.md, "Run bundles")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditledger.adapters.cli.chain import KeyFileOption
from auditledger.adapters.cli.common import console, err_console, fail, one_line_errors
from auditledger.adapters.ledger import Ledger
from auditledger.adapters.tamper.bundle import write_bundle
from auditledger.adapters.tamper.bundle_verify import verify_bundle
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.adapters.tamper.signing import Key


def register(app: typer.Typer) -> None:
    app.command("verify-bundle")(verify_bundle_command)


def export_bundle(
    ledger: Ledger,
    run: str,
    store: str,
    directory: Path,
    key_file: Path | None,
    with_payloads: bool,
) -> None:
    """`export --bundle DIR`: the run's rows as the landscape serves them, then the bundle."""
    if store.startswith("memory:"):
        raise fail("--bundle needs a store with a sealed log (SQLite or PostgreSQL), not memory://")
    with one_line_errors():
        key = Key.from_file(key_file) if key_file is not None else None
        if key is not None and key.kind == "ed25519" and key.private is None:
            raise fail("--key-file: signing a bundle needs the Ed25519 private key, not the public")
        rows = list(ledger.export_rows(run))
        upto = ledger.landscape_position()
        with RawLog.open(store) as log:
            manifest = write_bundle(
                log, run, rows, upto, directory, key=key, with_payloads=with_payloads
            )
    console.print(
        f"bundle {directory}: {manifest['events']['count']} events, "
        f"{sum(manifest['row_counts'].values())} rows, "
        f"{len(manifest['payloads']['included'])} payloads, tree size {manifest['tree_size']} "
        f"root {manifest['root_hash']}",
        highlight=False,
        soft_wrap=True,
    )


def verify_bundle_command(
    directory: Annotated[Path, typer.Argument(help="the bundle directory")],
    key_file: KeyFileOption = None,
) -> None:
    """Check a run bundle with no store: manifest signature, file hashes, inclusion proofs,
    the rows the events project to, the payloads. Exit 0 if all hold, 1 on a finding."""
    with one_line_errors():
        key = Key.from_file(key_file) if key_file is not None else None
    if not (directory / "manifest.json").is_file():
        raise fail(f"{directory}: no manifest.json (not a bundle)")
    report = verify_bundle(directory, key)
    console.print(
        f"bundle {directory}: {report.events} events, {report.rows} rows, "
        f"{report.payloads} payloads{_absent(report.absent)}; signature {report.signature}",
        highlight=False,
        soft_wrap=True,
    )
    for finding in report.findings:
        err_console.print(f"[bold red]FAIL[/]: {finding}", highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
    console.print("[green]OK[/]: every check holds", highlight=False)


def _absent(counts: dict[str, int]) -> str:
    """' (2 erased, 0 purged, 0 missing)' when the manifest says why payloads are absent."""
    if not counts:
        return ""
    return " (" + ", ".join(f"{n} {why}" for why, n in counts.items()) + ")"
