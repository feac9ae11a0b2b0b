"""The worker's cache of neighbour lists hands over coded rows, in one table that starts again
when the items it names outgrow what the entries can hold."""

from __future__ import annotations

from typing import Any

from models.recommend.itemcf import NeighbourList
from streams.keys import Keys
from streams.runtime.itemcache import neighbour_cache


class _Pipeline:
    def __init__(self, lists: dict[str, list[tuple[str, float]]]) -> None:
        self.lists, self.queued = lists, list[str]()

    def execute_command(self, _command: str, key: str, *_args: Any) -> None:
        self.queued.append(key.split(":")[-2])

    async def execute(self) -> list[list[Any]]:
        return [[[m.encode(), s] for m, s in self.lists[item]] for item in self.queued]


class _Client:
    def __init__(self, lists: dict[str, list[tuple[str, float]]]) -> None:
        self.lists = lists

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline(self.lists)


async def test_rows_share_one_table_until_it_outgrows_the_entries() -> None:
    lists = {f"i{n}": [(f"n{n}a", 0.5), (f"n{n}b", 0.25)] for n in range(4)}
    cache = neighbour_cache(_Client(lists), Keys("sr:"), 2, size=2, ttl_s=60.0)  # type: ignore[arg-type]
    first = await cache.get(["i0", "i1"])
    rows = [first["i0"], first["i1"]]
    assert all(isinstance(r, NeighbourList) for r in rows)
    assert tuple(rows[0]) == (("n0a", 0.5), ("n0b", 0.25))
    assert rows[0].table is rows[1].table
    assert rows[1].codes.tolist() == [2, 3]
    await cache.get(["i2"])  # 6 names: past size × count (4), the next read starts again
    again = await cache.get(["i3", "i0"])
    assert again["i3"].table is not rows[0].table
    assert again["i0"] is not first["i0"]
    assert again["i0"].table is again["i3"].table
