from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.contracts.dispatch import TaskDelivered
from shared.contracts.orders import Category, OrderAccepted, OrderFacts
from shared.events import (
    KNOWN_TYPES,
    Event,
    UndecodableRecord,
    UnknownEventType,
    from_record,
    to_record,
)


def accepted() -> Event:
    facts = OrderFacts(
        order_id="o-1",
        household_id="h-1",
        grid_id="g3",
        category=Category.medicine,
        items="insulin",
        priority=90,
        address="Datong 3-2-401",
        handoff_code="4821",
        placed_at=datetime(2022, 5, 1, 3, 40, tzinfo=UTC),
    )
    return Event(source="/orders", community_id="datong", data=OrderAccepted(order=facts))


def test_an_event_survives_binary_mode_with_its_key_and_attributes() -> None:
    event = accepted()
    record = to_record(event)
    headers = dict(record.headers)
    assert record.key == b"datong"
    assert headers["ce_type"] == b"doorstep.order.accepted.v1"
    assert headers["ce_id"] == event.id.encode()
    assert b'"type"' not in record.value  # the type travels in the header only
    assert from_record(record.key, record.value, record.headers) == event


@pytest.mark.parametrize(
    ("value", "change", "reason"),
    [
        (b"{not json", {}, "JSON"),
        (None, {"ce_type": b"doorstep.task.delivered.v1"}, "invalid event"),  # wrong payload
        (b"[1, 2]", {}, "not a JSON object"),
    ],
)
def test_records_that_are_not_doorstep_events_are_rejected_with_a_reason(
    value: bytes | None, change: dict[str, bytes], reason: str
) -> None:
    record = to_record(accepted())
    headers = [(k, change.get(k, v)) for k, v in record.headers]
    with pytest.raises(UndecodableRecord, match=reason):
        from_record(record.key, value if value is not None else record.value, headers)


def test_an_event_of_a_type_not_known_here_yet_is_told_apart_from_a_bad_record() -> None:
    record = to_record(accepted())
    newer = [(k, b"doorstep.order.accepted.v2" if k == "ce_type" else v) for k, v in record.headers]
    with pytest.raises(UnknownEventType):
        from_record(record.key, record.value, newer)


def test_a_record_without_cloudevent_headers_is_rejected() -> None:
    with pytest.raises(UndecodableRecord):
        from_record(b"datong", b"{}", [])


def test_every_type_name_is_versioned_and_unique() -> None:
    assert all(
        t.startswith("doorstep.") and t.rsplit(".", 1)[1].startswith("v") for t in KNOWN_TYPES
    )
    assert TaskDelivered.model_fields["type"].default in KNOWN_TYPES
