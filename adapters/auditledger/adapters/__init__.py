"""The composition root: stores, the Ledger facade, audited clients and the CLI."""

from auditledger.domain.errors import LedgerError

from .ledger import Ledger

__all__ = ["Ledger", "LedgerError"]
