"""Merkle proofs on the command line: `prove`, and `consistency --old --new`.

Both print JSON that tamper/merkle_verify.py (stand-alone, stdlib only) checks. Exit codes:
0 printed, 1 the stored tree or log no longer holds together (or a checkpoint does not match
the chain), 2 the command could not run (bad URL, unsealed position, unknown id, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from auditledger.adapters.cli.common import DEFAULT_STORE, StoreOption, fail, one_line_errors
from auditledger.adapters.tamper.chain_format import parse_checkpoints
from auditledger.adapters.tamper.merkle_errors import TreeDamaged
from auditledger.adapters.tamper.merkle_proofs import Prover, prove
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.domain.errors import InvalidCheckpoint


def register(app: typer.Typer) -> None:
    app.command("prove")(prove_command)


def prove_command(
    position: Annotated[
        int | None, typer.Option("--position", min=1, help="the event at this log position")
    ] = None,
    call: Annotated[
        str | None, typer.Option("--call", help="the CallRecorded event of this call id")
    ] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="every event of this node state")
    ] = None,
    size: Annotated[
        int | None,
        typer.Option("--size", min=1, help="prove against the tree of this size (default: all)"),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Print RFC 9162 inclusion proofs (JSON) for sealed events."""
    if sum(given is not None for given in (position, call, state)) != 1:
        raise fail("give exactly one of --position, --call, --state")
    try:
        with one_line_errors():
            proofs = prove(store, position=position, call_id=call, state_id=state, size=size)
    except TreeDamaged as error:
        raise fail(str(error), code=1) from None
    typer.echo(json.dumps({"proofs": [proof.model_dump() for proof in proofs]}, indent=1))


def merkle_consistency(store: str, old: str, new: str | None) -> None:
    """What `consistency --old --new` runs: the RFC 9162 proof between two tree sizes, each
    given as a size or as a file of checkpoints (its last one, checked against the chain)."""
    try:
        with one_line_errors(), RawLog.open(store) as log, Prover.over(log) as prover:
            old_size = _size(old, log, prover)
            new_size = None if new is None else _size(new, log, prover)
            proof = prover.consistency(old_size, new_size)
    except TreeDamaged as error:
        raise fail(str(error), code=1) from None
    typer.echo(json.dumps(proof.model_dump(), indent=1))


def _size(given: str, log: RawLog, prover: Prover) -> int:
    if given.isdigit():
        return int(given)
    path = Path(given)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidCheckpoint(given, f"not a tree size, nor a readable file: {error}") from None
    checkpoint = parse_checkpoints(text, given)[-1]
    entry = log.chain_entry_at(checkpoint.position)
    if entry is None or entry.chain_hash != checkpoint.chain_hash:
        raise TreeDamaged(
            f"checkpoint {given} (position {checkpoint.position}) does not match the chain "
            "as stored: the log was rewritten (see verify-chain --checkpoint)"
        )
    return prover.size_at(checkpoint.position)
