"""The composition root: stores, the Ledger facade, audited clients and the CLI."""

from auditledger.adapters.ledger import Ledger
from auditledger.domain.errors import LedgerError

__all__ = ["Ledger", "LedgerError"]
