"""Tamper evidence on the command line: seal, checkpoint, verify-chain, consistency, purge.

`verify-chain` is what `auditledger verify --chain` runs; it reads the raw tables only, so
it can be pointed at a copy of the store. Exit codes: 0 all holds, 1 tampering found,
2 the command could not run (bad URL, unreadable checkpoint, ...).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from auditledger.adapters.cli.common import (
    DEFAULT_STORE,
    StoreOption,
    console,
    fail,
    one_line_errors,
)
from auditledger.adapters.cli.proofs import merkle_consistency
from auditledger.adapters.storage.settings import StoreSettings
from auditledger.adapters.tamper.chain_format import ChainReport, Checkpoint, parse_checkpoints
from auditledger.adapters.tamper.merkle_proofs import Prover
from auditledger.adapters.tamper.notes import (
    NoteKey,
    TreeCheckpoint,
    default_origin,
    read_verifier_key,
    signed_checkpoint,
)
from auditledger.adapters.tamper.purge import parse_age, purge_payloads
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.adapters.tamper.signing import Key, checkpoint_of, read_key
from auditledger.adapters.tamper.verifier import verify_chain
from auditledger.adapters.tamper.witness import check_quorum, is_note, read_note
from auditledger.domain.errors import InvalidCheckpoint

KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="HMAC secret file, or an Ed25519 PEM key (private to sign, public to check)",
    ),
]
HmacEnvOption = Annotated[
    str | None,
    typer.Option("--hmac-key-env", help="environment variable holding an HMAC secret"),
]
ReadOnlyOption = Annotated[
    bool,
    typer.Option(
        "--read-only",
        help="open the store so that nothing in it can change (an auditor's copy); "
        "automatic when its directory cannot be written",
    ),
]
WitnessKeysOption = Annotated[
    list[str] | None,
    typer.Option(
        "--witness-key",
        help="a key whose signature counts towards --quorum on a signed-note checkpoint: "
        "name+keyid+base64 (as `witness` keys print), a file holding one, or a PEM key file "
        "(named by its stem); repeat for several",
    ),
]
QuorumOption = Annotated[
    int,
    typer.Option("--quorum", min=1, help="valid --witness-key signatures a note needs"),
]
CheckpointFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--checkpoint",
        help="file of checkpoints (what `checkpoint` printed); repeat for several files",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("seal")(seal)
    app.command("checkpoint")(checkpoint)
    app.command("verify-chain")(verify_chain_command)
    app.command("consistency")(consistency)
    app.command("purge")(purge)


def seal(
    store: StoreOption = DEFAULT_STORE,
    every: Annotated[
        float | None,
        typer.Option("--every", min=0.01, help="keep sealing every SECONDS until interrupted"),
    ] = None,
) -> None:
    """Extend the hash chain over every event recorded so far."""
    last = -1
    try:
        with one_line_errors(), RawLog.open(store) as source:
            while True:
                head = source.seal()
                if head.position != last:
                    console.print(
                        f"sealed up to position {head.position}: {head.chain_hash}",
                        highlight=False,
                        soft_wrap=True,
                    )
                    last = head.position
                if every is None:
                    return
                time.sleep(every)
    except KeyboardInterrupt:
        return


def checkpoint(
    store: StoreOption = DEFAULT_STORE,
    append: Annotated[
        Path | None, typer.Option("--append", help="also append the checkpoint to this file")
    ] = None,
    key_file: KeyFileOption = None,
    hmac_key_env: HmacEnvOption = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="json: one JSON line (default); note: a C2SP tlog-checkpoint signed note "
            "(needs an Ed25519 --key-file)",
        ),
    ] = "json",
    note: Annotated[
        Path | None,
        typer.Option("--note", help="write the signed note to this file (implies --format note)"),
    ] = None,
    origin: Annotated[
        str | None,
        typer.Option("--origin", help="the note's origin line (default: from the store URL)"),
    ] = None,
    key_name: Annotated[
        str | None,
        typer.Option("--key-name", help="the note signature's key name (default: the origin)"),
    ] = None,
) -> None:
    """Seal, then print the log head (position, chain hash, time) as one JSON line, or
    (--format note) the Merkle tree head as a signed note witnesses can cosign."""
    if output_format not in ("json", "note"):
        raise fail(f"--format is json or note, not {output_format!r}")
    if note is not None or output_format == "note":
        signed_note(store, note, origin or default_origin(store), key_name, key_file)
        return
    try:
        with one_line_errors():
            key = read_key(key_file, hmac_key_env)
            with RawLog.open(store) as source:
                head = source.seal()
            line = checkpoint_of(head, key).to_json()
        if append is not None:
            with append.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
    except OSError as error:
        raise fail(f"cannot append to {append}: {error}") from None
    typer.echo(line)


def signed_note(
    store: str, note: Path | None, origin: str, key_name: str | None, key_file: Path | None
) -> None:
    """What `checkpoint --format note` runs: seal, then sign the tree head as a note."""
    if key_file is None:
        raise fail("a signed-note checkpoint needs --key-file with an Ed25519 private key")
    with one_line_errors():
        key = NoteKey.of(key_name or origin, Key.from_file(key_file))
        with RawLog.open(store) as source:
            source.seal()
            with Prover.over(source) as prover:
                size = prover.head.size
                root = prover.root_hash(size)
        text = signed_checkpoint(TreeCheckpoint(origin, size, root), key).render()
    if note is not None:
        try:
            note.write_text(text, encoding="utf-8")
        except OSError as error:
            raise fail(f"cannot write {note}: {error}") from None
    typer.echo(text, nl=False)


def verify_chain_command(
    store: StoreOption = DEFAULT_STORE,
    checkpoint_files: CheckpointFiles = None,
    trust: Annotated[
        Path | None,
        typer.Option("--trust", help="start from the last checkpoint in this file"),
    ] = None,
    key_file: KeyFileOption = None,
    hmac_key_env: HmacEnvOption = None,
    read_only: ReadOnlyOption = False,
    witness_keys: WitnessKeysOption = None,
    quorum: QuorumOption = 1,
) -> None:
    """Recompute the hash chain from the raw tables; report the first broken position."""
    code = run_verify_chain(
        store,
        checkpoint_files or [],
        trust,
        key_file,
        hmac_key_env,
        read_only=read_only_wanted(store, read_only),
        witness_keys=witness_keys or [],
        quorum=quorum,
    )
    raise typer.Exit(code)


def read_only_wanted(store: str, asked: bool) -> bool:
    """--read-only, or a SQLite store whose directory cannot be written."""
    with one_line_errors():
        return asked or StoreSettings.parse(store).on_read_only_media


def run_verify_chain(
    store: str,
    checkpoint_files: list[Path],
    trust: Path | None = None,
    key_file: Path | None = None,
    hmac_key_env: str | None = None,
    until: int | None = None,
    *,
    read_only: bool = False,
    witness_keys: list[str] | None = None,
    quorum: int = 1,
) -> int:
    """What `verify --chain` runs: prints the outcome, returns the exit code (0 = holds).
    Signed-note checkpoint files need `quorum` valid signatures of `witness_keys` and the
    store's Merkle root at their size; JSON checkpoint files are checked against the chain."""
    notes = [path for path in checkpoint_files if is_note(path)]
    checkpoint_files = [path for path in checkpoint_files if path not in notes]
    notes_code = run_verify_notes(store, notes, witness_keys or [], quorum) if notes else 0
    with one_line_errors():
        key = read_key(key_file, hmac_key_env)
        checkpoints = [c for path in checkpoint_files for c in _read_checkpoints(path)]
        trusted = _read_checkpoints(trust)[-1] if trust is not None else None
        with RawLog.open(store, read_only=read_only) as source:
            report = verify_chain(
                source,
                checkpoints,
                trusted=trusted,
                signature_check=key.check if key is not None else None,
                until=until,
            )
    _print_report(report, key, len(checkpoints) + (trusted is not None))
    return 0 if report.ok and notes_code == 0 else 1


def run_verify_notes(store: str, notes: list[Path], witness_keys: list[str], quorum: int) -> int:
    with one_line_errors():
        if not witness_keys:
            raise InvalidCheckpoint(str(notes[0]), "a signed-note checkpoint needs --witness-key")
        keys = [read_verifier_key(given) for given in witness_keys]
        reports = [check_quorum(read_note(p), keys, quorum, store, str(p)) for p in notes]
    for report in reports:
        head = f"size {report.checkpoint.size} of {report.checkpoint.origin}"
        signed = f"{len(report.signers)} of quorum {report.quorum} witness signatures valid"
        if report.ok:
            console.print(
                f"cosigned checkpoint {head}: {signed}, root matches the store",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(
                f"[bold red]REFUSED[/] cosigned checkpoint {report.finding}",
                highlight=False,
                soft_wrap=True,
            )
    return 0 if all(report.ok for report in reports) else 1


def consistency(
    old: Annotated[
        Path | None, typer.Argument(help="file whose last checkpoint is the older head")
    ] = None,
    new: Annotated[
        Path | None, typer.Argument(help="file whose last checkpoint is the newer head")
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    key_file: KeyFileOption = None,
    hmac_key_env: HmacEnvOption = None,
    old_tree: Annotated[
        str | None,
        typer.Option("--old", help="Merkle proof from this tree size (or checkpoint file)"),
    ] = None,
    new_tree: Annotated[
        str | None,
        typer.Option("--new", help="... to this tree size or checkpoint file (default: all)"),
    ] = None,
) -> None:
    """Check the log only grew from OLD to NEW: the same history up to OLD's head. With
    --old [--new]: print the RFC 9162 consistency proof between two tree sizes (JSON)."""
    if old_tree is not None or new_tree is not None:
        if old is not None or new is not None or old_tree is None:
            raise fail("give OLD NEW checkpoint files, or --old SIZE_OR_CHECKPOINT [--new ...]")
        merkle_consistency(store, old_tree, new_tree)
        return
    if old is None or new is None:
        raise fail("give OLD and NEW checkpoint files (or --old/--new for a Merkle proof)")
    with one_line_errors():
        older, newer = _read_checkpoints(old)[-1], _read_checkpoints(new)[-1]
    if older.position > newer.position:
        raise fail(f"{old} is at position {older.position}, past {new} ({newer.position})")
    code = run_verify_chain(store, [old, new], None, key_file, hmac_key_env, newer.position)
    if code == 0:
        console.print(
            f"consistent: positions 1..{older.position} unchanged, "
            f"{older.position + 1}..{newer.position} appended",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(code)


def purge(
    older_than: Annotated[str, typer.Option("--older-than", help="e.g. 30d, 12h, 2w")],
    run: Annotated[str | None, typer.Option("--run", help="only payloads of this run")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count, delete nothing")] = False,
    override_retention: Annotated[
        bool,
        typer.Option(
            "--override-retention",
            help="purge below the store's minimum retention (needs --reason; recorded)",
        ),
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="why the retention is overridden")
    ] = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Delete payload bytes past retention; hashes, events and the chain stay."""
    if override_retention and not (reason or "").strip():
        raise fail("--override-retention needs --reason TEXT (it is recorded)")
    with one_line_errors():
        age = parse_age(older_than)
        with RawLog.open(store) as source:
            result = purge_payloads(
                source,
                age,
                run_id=run,
                dry_run=dry_run,
                override_reason=reason if override_retention else None,
            )
    verb = "would purge" if dry_run else "purged"
    count = result.candidates if dry_run else result.purged
    console.print(
        f"{verb} {count} payload(s) last named before {result.cutoff.isoformat()}; "
        "their hashes and the chain stay"
        + ("" if result.override_id is None else f"; retention overridden ({result.override_id})"),
        highlight=False,
        soft_wrap=True,
    )


def export_checkpoint(store: str) -> dict[str, object] | None:
    """The sealed log head for `export` to include (None for memory://)."""
    if store.startswith("memory:"):
        return None
    with one_line_errors(), RawLog.open(store) as source:
        head = source.seal()
    return json.loads(checkpoint_of(head).to_json())  # type: ignore[no-any-return]


def _read_checkpoints(path: Path) -> list[Checkpoint]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidCheckpoint(str(path), f"cannot read: {error}") from None
    return parse_checkpoints(text, str(path))


def _print_report(report: ChainReport, key: Key | None, checkpoints: int) -> None:
    console.print(
        f"chain: {report.events_checked} events checked, sealed up to "
        f"{report.sealed_position}, unsealed tail {report.unsealed}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"payloads: {report.payloads_checked} checked, {report.payloads_purged} purged "
        f"(hash kept, bytes deleted), {report.payloads_erased} erased (by erase: hash kept, "
        "bytes deleted)",
        highlight=False,
        soft_wrap=True,
    )
    if checkpoints:
        signed = f", signatures checked ({key.kind})" if key is not None else ""
        console.print(
            f"checkpoints: {report.checkpoints_checked} of {checkpoints} matched{signed}",
            highlight=False,
            soft_wrap=True,
        )
    if report.finding is None:
        console.print(
            f"[green]OK[/]: head {report.head_position} {report.head_hash}", highlight=False
        )
    else:
        console.print(f"[bold red]BROKEN[/] at {report.finding}", highlight=False, soft_wrap=True)
