"""Notify's live feed: stored notifications pushed to their recipient's open streams."""

from __future__ import annotations

import pytest

from services.notify.live import LiveFeed, TooManyStreams


def note(n: int, recipient: str = "household:h1") -> dict[str, object]:
    return {"_id": f"e{n}:{recipient}", "recipient": recipient, "seq": f"{n:020d}"}


async def test_a_notification_reaches_every_open_stream_of_its_recipient_only() -> None:
    feed = LiveFeed()
    async with (
        feed.subscribe("household:h1") as phone,
        feed.subscribe("household:h1") as tablet,
        feed.subscribe("household:h2") as neighbour,
    ):
        feed.publish(note(1))
        assert phone.get_nowait() == tablet.get_nowait() == note(1)
        assert neighbour.empty()


async def test_a_notification_seen_twice_is_sent_once() -> None:
    feed = LiveFeed()
    async with feed.subscribe("household:h1") as stream:
        feed.publish(note(1))  # stored here...
        feed.publish(note(1))  # ...and found again by the tail
        assert stream.qsize() == 1


async def test_an_inbox_holds_a_few_streams_and_a_closed_one_frees_its_place() -> None:
    feed = LiveFeed(per_recipient=2)
    async with feed.subscribe("staff:c"), feed.subscribe("staff:c"):
        assert feed.open_streams("staff:c") == 2
        with pytest.raises(TooManyStreams):
            async with feed.subscribe("staff:c"):
                pass
    assert feed.open_streams("staff:c") == 0 and feed.streams == 0


async def test_a_client_that_does_not_read_is_ended_not_buffered_without_bound() -> None:
    feed = LiveFeed(queue_size=3)
    async with feed.subscribe("household:h1") as stream:
        for n in range(10):
            feed.publish(note(n))
        assert stream.qsize() == 3
        items = [stream.get_nowait() for _ in range(3)]
        assert None in items  # the stream's end


def test_a_stream_sends_each_notification_once_whatever_its_seq_says() -> None:
    from services.notify.api import Sent
    from services.notify.handlers import Sequence

    sent = Sent()
    # Stamped before this stream started (or on a host whose clock is behind), stored and
    # pushed after it subscribed: sent, once.
    assert sent.first("n-stamped-early") and not sent.first("n-stamped-early")
    sequence = Sequence()
    sequence.after(f"{10**19:020d}")  # the newest stored, by a host whose clock is ahead
    assert int(sequence.next()) > 10**19
