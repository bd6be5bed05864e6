"""The eventsourcing Application that owns the event log, and how its errors are translated."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.application import Application

import auditledger.domain  # noqa: F401  (registers every explicit event topic)


class LedgerApplication(Application[UUID]):
    name = "auditledger"
