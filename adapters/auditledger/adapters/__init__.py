"""The composition root: stores, the Ledger facade, audited clients and the CLI."""

from auditledger.adapters.async_ledger import AsyncLedger
from auditledger.adapters.ledger import Ledger
from auditledger.domain.errors import LedgerError

__all__ = ["AsyncLedger", "Ledger", "LedgerError"]
