"""docs/events.md stays true to the code: every topic and every event field is in it."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from eventsourcing.domain import CanMutateAggregate

from auditledger.domain import Batch, CallKey, Erasure, NodeState, Operation, RetentionOverride, Run
from auditledger.domain.call_parent import CallRecordedEvent

CATALOGUE = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
AGGREGATES = [Run, NodeState, Operation, Batch, CallKey, Erasure, RetentionOverride]
ENVELOPE = {"originator_id", "originator_id_type", "originator_version", "timestamp"}
ENVELOPE |= {"originator_topic"}


def event_classes() -> list[type]:
    """The events an aggregate declares with a topic (its bare `Event` base is never stored)."""
    return [
        value
        for aggregate in AGGREGATES
        for value in vars(aggregate).values()
        if isinstance(value, type)
        and issubclass(value, CanMutateAggregate)
        and getattr(value, "TOPIC", None) is not None
    ]


def test_every_topic_in_the_code_is_in_the_catalogue_and_no_other() -> None:
    in_code = {a.TOPIC for a in AGGREGATES} | {e.TOPIC for e in event_classes()}
    in_docs = set(re.findall(r"auditledger:[A-Za-z.]+:v\d+", CATALOGUE))
    assert in_code == in_docs


def test_every_event_field_is_described_in_the_catalogue() -> None:
    for event in event_classes():
        fields = set(typing.get_type_hints(event)) - ENVELOPE
        for name in fields:
            assert f"`{name}" in CATALOGUE, f"{event.TOPIC}: field {name} is not documented"


def test_both_parents_record_calls_with_the_one_documented_shape() -> None:
    shape = typing.get_type_hints(CallRecordedEvent)
    for event in (NodeState.CallRecorded, Operation.CallRecorded):
        assert typing.get_type_hints(event) == shape, event.TOPIC
        assert event.TOPIC in CATALOGUE
