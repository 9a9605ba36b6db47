"""Which ack frames settle a pass's stored deliveries: fewest frames, never an unsettled tag."""

from __future__ import annotations

from worker_framework.broker import Delivery
from worker_framework.settlement import ack_frames
from worker_framework.task_threads import Job

CHANNEL = object()


def delivery(tag: int, channel: object = CHANNEL) -> Delivery:
    return Delivery(b"{}", {}, None, None, None, None, False, tag, channel)


def unsettled(*tags: int) -> dict[int, Job]:
    return {tag: Job(delivery(tag), 0, 0.0) for tag in tags}


def frames(stored: list[Delivery], still_unsettled: dict[int, Job]) -> list[tuple[int, bool]]:
    return [(d.delivery_tag, multiple) for d, multiple in ack_frames(stored, still_unsettled)]


def test_deliveries_older_than_every_unsettled_one_go_out_as_one_multiple_ack():
    stored = [delivery(3), delivery(1), delivery(2)]
    assert frames(stored, unsettled(4, 5)) == [(3, True)]
    assert frames(stored, unsettled()) == [(3, True)]


def test_deliveries_newer_than_an_unsettled_one_are_acked_one_by_one():
    stored = [delivery(1), delivery(2), delivery(4), delivery(6)]
    assert frames(stored, unsettled(3, 5)) == [(2, True), (4, False), (6, False)]


def test_a_lone_delivery_is_acked_alone():
    assert frames([delivery(7)], unsettled(2)) == [(7, False)]
    assert frames([delivery(1), delivery(7)], unsettled(2)) == [(1, False), (7, False)]


def test_deliveries_of_several_channels_are_acked_one_by_one():
    other = object()
    stored = [delivery(1), delivery(2, other)]
    assert frames(stored, unsettled()) == [(1, False), (2, False)]


def test_unsettled_deliveries_of_another_channel_do_not_limit_the_multiple_ack():
    other = object()
    still = {1: Job(delivery(1, other), 0, 0.0), **unsettled(9)}
    assert frames([delivery(2), delivery(3)], still) == [(3, True)]
