"""What can stop a Merkle proof: each a LedgerError naming the position or size and the rule."""

from __future__ import annotations

from auditledger.domain.errors import LedgerError


class NotSealed(LedgerError):
    """The event, or the tree size, asked about is past what has been sealed."""

    def __init__(self, what: str, sealed: int) -> None:
        self.what = what
        self.sealed = sealed
        super().__init__(
            f"{what} is not sealed: the Merkle tree holds {sealed} events; run "
            "`auditledger seal` (or checkpoint) first"
        )


class NothingToProve(LedgerError):
    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        super().__init__(f"{what}: {reason}")


class TreeDamaged(LedgerError):
    """The stored tree disagrees with itself or with the log: tables altered after sealing."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"the Merkle tree does not hold together: {detail} (tree tables or events altered "
            "after sealing; run `auditledger verify-chain`)"
        )
