"""The key layout: a user's keys, their erasure mark and their partition's offsets share one
Redis Cluster slot, the partition is Kafka's, and a key in another slot does not parse."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from streams.config import Settings
from streams.keys import (
    ITEM_FIELDS,
    USER_FIELDS,
    Keys,
    events_partitions,
    partition_of,
    partition_tag,
)
from streams.ops.topics.spec import load_topics

KEYS = Keys("sr:", partitions=6)
user_ids = st.text(min_size=1, max_size=40).filter(lambda u: "\x00" not in u)


@given(user_ids, st.integers(min_value=1, max_value=64))
def test_the_partition_is_the_one_kafkas_default_partitioner_picks(
    user_id: str, partitions: int
) -> None:
    every = list(range(partitions))
    assert partition_of(user_id, partitions) == DefaultPartitioner()(user_id.encode(), every, every)


@given(user_ids)
def test_a_users_keys_mark_and_partition_offsets_share_one_slot(user_id: str) -> None:
    slot = key_slot(KEYS.user(user_id, "history").encode())
    assert {key_slot(k.encode()) for k in KEYS.user_keys(user_id)} == {slot}
    assert key_slot(KEYS.erased(user_id).encode()) == slot
    assert key_slot(KEYS.offsets(partition_of(user_id, 6)).encode()) == slot
    for field in USER_FIELDS:
        assert KEYS.parse(KEYS.user(user_id, field)) == ("user", user_id, field)


@pytest.mark.parametrize("partitions", [1, 3, 6, 12, 256])
def test_partitions_spread_evenly_over_the_slots(partitions: int) -> None:
    shares = [
        key_slot(partition_tag(p, partitions).encode()) * partitions // 16384
        for p in range(partitions)
    ]
    assert shares == list(range(partitions))


def test_a_user_key_outside_the_users_slot_does_not_parse() -> None:
    user = "u1"
    right = KEYS.tag(user)
    wrong = next(partition_tag(p, 6) for p in range(6) if partition_tag(p, 6) != right)
    with pytest.raises(ValueError, match="slot"):
        KEYS.parse(f"sr:{{{wrong}}}u:{user}:history")
    with pytest.raises(ValueError, match="key shape"):
        KEYS.parse(f"sr:u:{user}:history")  # the layout before tags
    with pytest.raises(ValueError, match="slot"):
        KEYS.parse("sr:{4.0}offsets")


def test_the_default_partition_count_is_the_events_topics() -> None:
    (events,) = [s for s in load_topics(Settings().topics_file) if s.name == "events"]
    assert Keys().partitions == events_partitions() == events.partitions


@given(user_ids)
def test_an_items_keys_share_its_homes_slot_and_parse_back(item_id: str) -> None:
    home = partition_of(item_id, 6)
    slot = key_slot(KEYS.offsets(home).encode())
    for field in ITEM_FIELDS:
        key = KEYS.item(item_id, field)
        assert key_slot(key.encode()) == slot
        assert KEYS.parse(key) == ("item", item_id, field)
    assert key_slot(KEYS.marks("fbt", home).encode()) == slot


def test_shared_structures_written_together_share_a_slot() -> None:
    for first, second in (("mf_items", "mf_steps"), ("mf_items", "mf_pool"),
                          ("fbt_items", "fbt_total"),
                          ("learner", "popularity_learnt")):  # fmt: skip
        assert key_slot(KEYS.global_(first).encode()) == key_slot(KEYS.global_(second).encode())
        assert KEYS.parse(KEYS.global_(first)) == ("global", "", first)


def test_an_item_key_outside_its_homes_slot_does_not_parse() -> None:
    home = partition_of("phone", 6)
    wrong = partition_tag((home + 1) % 6, 6)
    with pytest.raises(ValueError, match="home"):
        KEYS.parse(f"sr:{{{wrong}}}i:phone:fbt_pairs")
