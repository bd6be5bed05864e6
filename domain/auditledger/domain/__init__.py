"""The pure domain: aggregates, their events and the rules they keep. No I/O.

Importing this package registers every explicit event topic, so stored events resolve.
"""

from .batch import Batch
from .call_key import CallKey
from .call_parent import CallFacts
from .erasure import Erasure, RetentionOverride
from .errors import LedgerError
from .node_state import NodeState
from .operation import Operation
from .run import Run

__all__ = [
    "Batch",
    "CallFacts",
    "CallKey",
    "Erasure",
    "LedgerError",
    "NodeState",
    "Operation",
    "RetentionOverride",
    "Run",
]
