"""`auditledger witness`: cosign a signed-note checkpoint that extends the last one seen.

Exit codes: 0 cosigned (the note, with the witness's signature appended, is written back to
CHECKPOINT and printed), 1 refused (not signed by --log-key, not consistent with what the
witness saw, or not the store's tree), 2 the command could not run (unreadable note or key,
bad URL, ...). Nothing is signed, written or recorded unless it cosigns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditledger.adapters.cli.common import (
    DEFAULT_STORE,
    StoreOption,
    err_console,
    fail,
    one_line_errors,
)
from auditledger.adapters.tamper.notes import (
    COSIGNATURE_V1,
    ED25519,
    KINDS,
    NoteKey,
    read_verifier_key,
)
from auditledger.adapters.tamper.signing import Key
from auditledger.adapters.tamper.witness import WitnessRefused, WitnessState, cosign, read_note

SIGNATURE_TYPES = {KINDS[kind]: kind for kind in (COSIGNATURE_V1, ED25519)}
"""--signature-type's values, the default (interoperable with C2SP witnesses' clients) first."""


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
    log_keys: Annotated[
        list[str] | None,
        typer.Option(
            "--log-key",
            help="the log's verifier key (name+keyid+base64, a file holding one, or its PEM "
            "public key); repeatable: CHECKPOINT must carry a valid signature by one of them",
        ),
    ] = None,
    signature_type: Annotated[
        str,
        typer.Option(
            "--signature-type",
            help="cosignature/v1 (C2SP tlog-cosignature, type 0x04, timestamped) or ed25519 "
            "(plain note signature, type 0x01, what witnesses made before)",
        ),
    ] = KINDS[COSIGNATURE_V1],
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Cosign CHECKPOINT if it carries the log's signature (--log-key) and the store proves it
    extends the last checkpoint this witness saw (the first one of an origin is trusted on
    first use); refuse loudly otherwise. The witness's verifier key (for `verify
    --witness-key`) is kept in STATE/vkey."""
    if signature_type not in SIGNATURE_TYPES:
        raise fail(f"--signature-type {signature_type!r}: use one of {', '.join(SIGNATURE_TYPES)}")
    with one_line_errors():
        kind = SIGNATURE_TYPES[signature_type]
        note_key = NoteKey.of(name or key.stem, Key.from_file(key), kind)
        logs = [read_verifier_key(given) for given in log_keys or []]
        note = read_note(checkpoint)
        if not logs:
            err_console.print(
                "[bold yellow]warning:[/] no --log-key: the log's own signature on "
                f"{checkpoint} is NOT checked; give the log's verifier key so that this witness "
                "cosigns only checkpoints the log signed",
                highlight=False,
                soft_wrap=True,
            )
        try:
            cosigned = cosign(note, note_key, WitnessState(state), store, str(checkpoint), logs)
        except WitnessRefused as refused:
            raise fail(str(refused), code=1) from None
    text = cosigned.render()
    (state / "vkey").write_text(note_key.vkey + "\n", encoding="utf-8")
    try:
        checkpoint.write_text(text, encoding="utf-8")
    except OSError as error:
        raise fail(f"cosigned, but cannot write {checkpoint}: {error}") from None
    typer.echo(text, nl=False)
