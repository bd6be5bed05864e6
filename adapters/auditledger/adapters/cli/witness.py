"""`auditledger witness`: cosign a signed-note checkpoint that extends the last one seen.

Exit codes: 0 cosigned (the note, with the witness's signature appended, is written back to
CHECKPOINT and printed), 1 refused (not consistent with what the witness saw, or not the
store's tree), 2 the command could not run (unreadable note or key, bad URL, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditledger.adapters.cli.common import DEFAULT_STORE, StoreOption, fail, one_line_errors
from auditledger.adapters.tamper.notes import NoteKey
from auditledger.adapters.tamper.signing import Key
from auditledger.adapters.tamper.witness import WitnessRefused, WitnessState, cosign, read_note


def register(app: typer.Typer) -> None:
    app.command("witness")(witness)


def witness(
    checkpoint: Annotated[Path, typer.Argument(help="signed-note checkpoint file to cosign")],
    state: Annotated[
        Path, typer.Option("--state", help="directory keeping the last tree seen per origin")
    ],
    key: Annotated[Path, typer.Option("--key", help="the witness's Ed25519 PEM private key")],
    name: Annotated[
        str | None,
        typer.Option("--name", help="the witness's key name (default: the key file's stem)"),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Cosign CHECKPOINT if the store proves it extends the last checkpoint this witness saw
    (the first one of an origin is trusted on first use); refuse loudly otherwise. The
    witness's verifier key (for `verify --witness-key`) is kept in STATE/vkey."""
    with one_line_errors():
        note_key = NoteKey.of(name or key.stem, Key.from_file(key))
        note = read_note(checkpoint)
        try:
            cosigned = cosign(note, note_key, WitnessState(state), store, str(checkpoint))
        except WitnessRefused as refused:
            raise fail(str(refused), code=1) from None
    text = cosigned.render()
    (state / "vkey").write_text(note_key.vkey + "\n", encoding="utf-8")
    try:
        checkpoint.write_text(text, encoding="utf-8")
    except OSError as error:
        raise fail(f"cosigned, but cannot write {checkpoint}: {error}") from None
    typer.echo(text, nl=False)
