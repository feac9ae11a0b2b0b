"""The learner: the sources (MF, content, user-CF, FBT, followees) learn beside the publish path.

It consumes ``events`` in its own consumer group (``{app_id}-learner``), so learning never
delays a list and a slow learner shows as its own lag, not the worker's. Per batch it:

1. validates the events as the worker does and leaves out those of erased users;
2. leaves out events it has already learnt (``u:{user}:learnt``, a window of event ids as
   long as the worker's dedupe window): a replay or a redelivery teaches nothing twice;
3. lets every source learn the rest, then asks them for the candidates of the users it
   touched, without the items each user's state excludes, and keeps them as the users'
   pools (streams/runtime/pools.py) for the worker to read;
4. marks the events learnt, records its progress (the newest broker time learnt, the
   stream's half-life as learnt so far), and only then commits its offsets.

The half-life is :class:`models.halflife.LearnedHalfLife` fed every fresh item event, as eval
feeds it: the followees source decays by it here, and the worker's social proof by the value
stored with the progress (streams/runtime/worker.py).

Each source learns a batch once: item-CF records the events as learnt in its own atomic
step, and every other source writes how far it has learnt each partition with its own state
(streams/sources/progress.py), so a learner killed half way through a batch teaches each
source only what it had not learnt. A Redis or Kafka outage is waited out
(streams/runtime/outage.py), never skipped. By default
``socialrec worker`` starts it as a child process (``SOCIALREC_LEARNER=child``); it also runs
alone as ``socialrec learner`` (``external``), or inside the worker's batches (``inline``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from models.events import Event
from models.halflife import LearnedHalfLife
from models.recommend import excluded_items
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import InboundRecord, recommend_params, validate_record
from streams.runtime.forgetting import ForgetFollower, marked
from streams.runtime.learner_state import LearnerState
from streams.runtime.learner_steps import Withdrawals
from streams.runtime.outage import wait_out
from streams.runtime.refresh import Refreshes
from streams.security import kafka_client_kwargs
from streams.sources import SourceSet
from streams.sources.progress import Progress, WentBack
from streams.sources.writes import partition_order
from streams.store import EXCLUSIONS_ONLY, RedisStore, in_flight

log = logging.getLogger(__name__)

#: Records per learner batch at most: a learner that fell behind catches up in large batches,
#: where each source's round trips and each user's pool are paid once per batch.
LEARN_BATCH_MAX = 2_000
#: How long a batch waits for more events after its first (well inside the 1 s lag budget).
GATHER_S = 0.2
#: A fetch is answered once this much is there, or after FETCH_WAIT_MS: a batch gathers
#: GATHER_S of events anyway, and fetches answered at every event's arrival cost the broker and
#: the learner a request each (at 150 to 500 events/s, a sixth of the learner's CPU).
FETCH_MIN_BYTES = 64 * 1024
FETCH_WAIT_MS = 100
#: How long a stop waits for the batch in hand. One waiting out a Redis or Kafka outage is
#: given up then: its offsets were not stored, so the next start learns it again, and each
#: source's progress (streams/sources/progress.py) keeps what was learnt from being learnt twice.
STOP_GRACE_S = 10.0
#: How long an idle learner waits for a first event before it refreshes the pools put off
#: (and checks for a stop): half the default refresh interval, so a put-off pool is at most
#: that late when the stream goes quiet.
IDLE_S = 0.5


def learner_group(settings: Settings) -> str:
    return f"{settings.app_id}-learner"


@dataclass
class Learner:
    """One batch at a time: learn the fresh events, then refresh the touched users' pools."""

    settings: Settings
    store: RedisStore
    sources: SourceSet
    state: LearnerState
    metrics: WorkerMetrics
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._params = recommend_params(self.settings)
        #: The stream's half-life, continued from the stored choice at the first batch.
        self.half_life: LearnedHalfLife | None = None
        self.refreshes = Refreshes(self.settings.pool_refresh_s)
        #: Users whose pools were computed since the last stored progress (which counts them).
        self._refreshed = 0
        # Per partition: the last offset this learner stored, and where it last went back to.
        self._stored: dict[str, int] = {}
        self._rewound: dict[str, int] = {}
        #: Where a source found Redis older than it wrote (streams/sources/progress.py).
        self._went_back: dict[str, int] = {}

    async def _without_erased(
        self, valid: list[tuple[Event, InboundRecord]]
    ) -> list[tuple[Event, InboundRecord]]:
        """Leave out events in flight when their user was erased, and the target of those
        aimed at a user erased since, as the worker's state step does
        (streams/store/erasure.py ``in_flight``). One MGET per batch (anonymous marks)."""
        users = sorted({u for e, _ in valid for u in (e.user_id, e.target_user_id) if u})
        marks = await self._wait_out(lambda: self.store.erased_at(users), "marks") if users else {}
        kept = ((in_flight(e, r.timestamp, marks), r) for e, r in valid)
        return [(e, r) for e, r in kept if e is not None]

    async def learn(self, records: Sequence[InboundRecord]) -> int:
        """Learn a batch of ``events`` records; returns how many events were new."""
        now = self.clock()
        valid = [
            (checked, record)
            for record in records
            if isinstance(checked := validate_record(self.settings, record, now), Event)
        ]
        valid = await self._without_erased(valid)
        fresh = await self._wait_out(
            lambda: self.state.unlearnt([e for e, _ in valid]), "learnt ids"
        )
        withdrawn = await self._learn_half_life(fresh)
        progress = Progress(
            self.state.client,
            self.state.keys,
            {e.event_id: (e.user_id, f"{r.topic}:{r.partition}", r.offset) for e, r in valid},
        )
        # One partition's users after another's: each source's step is one partition's slot.
        fresh = partition_order(self.state.keys, fresh)
        try:
            await self.sources.learn(fresh, progress)  # each source waits out outages itself
        except WentBack as back:  # the batch is not stored: the next one goes back first
            points = back.resume
            await self._wait_out(lambda: self.state.go_back(points), "offsets")
            self._went_back = points  # where run() sends the consumer, right after
            self.half_life = None  # what it learnt of this batch goes back with the rest
            log.warning("learner: Redis came back older mid-batch (partitions %s)", back)
            return 0
        touched = dict.fromkeys(e.user_id for e in fresh if e.item_id is not None)
        await self.refresh(self.refreshes.take(touched, self.monotonic()), now)
        newest = max((r.timestamp for r in records), default=0.0)
        # Item-CF recorded its events as learnt in its own step: the rest are marked here.
        unmarked = [e for e in fresh if not self.sources.records_learnt(e)]
        ends: dict[str, int] = {}
        for r in records:  # every record, valid or not: the next batch starts after these
            ends[f"{r.topic}:{r.partition}"] = r.offset
        await self._store_progress(unmarked, newest, ends, withdrawn)
        self._stored.update(ends)
        for part in ends:  # stored past it: a later gap there is a new one
            self._rewound.pop(part, None)
        return len(fresh)

    async def _learn_half_life(self, fresh: Sequence[Event]) -> Withdrawals:
        """Take the erasures' withdrawals out of the learned popularity, feed it every fresh
        item event, oldest first (a batch mixes partitions), and give the sources that decay by
        it the value it has now. Returns the withdrawals applied, for the step that stores it."""
        if self.half_life is None:
            start_s = self.settings.popularity_half_life_s
            stored = lambda: self.state.half_life(start_s)  # noqa: E731
            self.half_life = await self._wait_out(stored, "half-life")
        withdrawn: Withdrawals = await self._wait_out(self.state.withdrawals, "withdrawals")
        for item_id, weight_, ts in withdrawn.entries:
            self.half_life.withdraw(item_id, weight_, ts)
        weight = self.store.params.weight
        for event in sorted(fresh, key=lambda e: e.ts):
            if event.item_id is not None:
                self.half_life.update(event.item_id, weight(event.type), event.ts)
        self.sources.use_half_life(self.half_life.half_life_s)
        return withdrawn

    async def withdraw_idle(self) -> None:
        """Apply erasures' withdrawals while no events come (an erasure reaches the learned
        popularity in seconds either way)."""
        if await self._wait_out(self.state.withdrawals, "withdrawals"):
            withdrawn = await self._learn_half_life(())
            await self._store_progress((), 0.0, {}, withdrawn)

    async def _store_progress(
        self,
        unmarked: Sequence[Event],
        newest: float,
        ends: Mapping[str, int],
        withdrawn: Withdrawals,
    ) -> None:
        """Store the progress (streams/runtime/learner_state.py ``mark``) with the refresh
        interval, the half-life and the users refreshed since the last time, waiting outages
        out."""
        interval, half_life, refreshed = self.refreshes.interval_s, self.half_life, self._refreshed
        mark = lambda: self.state.mark(  # noqa: E731
            unmarked, newest, interval, ends, half_life, withdrawn, refreshed
        )
        await self._wait_out(mark, "progress")
        self._refreshed -= refreshed

    async def rewind(self, consumer: Any, records: Sequence[InboundRecord]) -> list[InboundRecord]:
        """The records to learn, after sending the consumer back on each partition where it
        stands past the offsets stored with the learnt state (streams/runtime/learner_state.py):

        - Redis holds less than this learner stored (it came back older: a crash lost its last
          writes), or
        - the batch starts past the stored offset on a partition this learner has not stored
          yet (after a restart or a rebalance, the group had committed further). Once per
          offset: events deleted by retention, or offsets taken by transaction markers, cannot
          be read again.
        """
        first: dict[str, int] = {}
        for r in records:
            first.setdefault(f"{r.topic}:{r.partition}", r.offset)
        stored = await self._wait_out(lambda: self.state.resume_points(list(first)), "offsets")
        back: dict[str, int] = {}
        for part, offset in first.items():
            resume, mine = stored.get(part), self._stored.get(part)
            if resume is None:
                continue
            if mine is not None and offset == mine + 1:  # reading on from its own batch
                behind = resume <= mine  # Redis came back older than this learner left it
            else:  # the consumer moved (a restart, the partition back from another learner)
                behind = offset > resume and self._rewound.get(part) != resume
            if behind:
                back[part] = resume
        self._seek(consumer, back, "the learnt state's offset")
        if back:  # the popularity learnt past those offsets goes back with them
            self.half_life = None
            self.sources.forget_written()  # what they wrote past those offsets is gone
        return [r for r in records if f"{r.topic}:{r.partition}" not in back]

    def go_back(self, consumer: Any) -> None:
        """Send the consumer back where a source found Redis older than it wrote during the
        batch just learnt (:meth:`learn`; the point is stored too, for whichever learner
        learns the partition next), on the partitions it still holds."""
        held = {f"{tp.topic}:{tp.partition}" for tp in consumer.assignment()}
        points = {p: resume for p, resume in self._went_back.items() if p in held}
        self._seek(consumer, points, "the sources' marks")
        self._went_back = {}

    def _seek(self, consumer: Any, points: Mapping[str, int], whence: str) -> None:
        """Send the consumer to ``points`` (partition -> offset), each remembered as gone
        back to (:meth:`rewind` goes back to an offset once)."""
        from aiokafka import TopicPartition

        for part, resume in points.items():
            topic, _, partition = part.rpartition(":")
            consumer.seek(TopicPartition(topic, int(partition)), resume)
            self._rewound[part] = resume
            self._stored.pop(part, None)
            log.warning("learner: partition %s goes back to %s", partition, whence)

    async def forget_erased(self, digests: AbstractSet[str]) -> int:
        """Drop the users an erasure broadcast names (streams/runtime/forgetting.py) from the
        refresh memory: no user id of theirs stays in the learner, nor a refresh put off for them
        (it would find nothing to keep: ``PoolStore.put`` skips erased users)."""
        return self.refreshes.forget(await marked(self.refreshes.users(), digests))

    async def refresh(self, users: Sequence[str], now: float) -> None:
        """Ask the sources for the users' candidates and keep them as their pools."""
        if not users:
            return
        views = (await self._wait_out(lambda: self.store.read_users(users), "views")).views
        exclude = {u: excluded_items(v, self._params) for u, v in views.items()}
        pools = await self.sources.candidates(exclude, now)
        await self._wait_out(lambda: self.state.pools.put(pools), "pools")
        self._refreshed += len(users)

    def _wait_out(self, step: Callable[[], Any], what: str) -> Any:
        return wait_out(step, self.metrics, f"learner {what}")

    async def run(self, stop: asyncio.Event) -> None:
        """Consume ``events`` in the learner's group until ``stop`` is set."""
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            self.settings.topic("events"),
            **kafka_client_kwargs(self.settings),
            group_id=learner_group(self.settings),
            client_id=learner_group(self.settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.session_timeout_s * 1000 / 3),
            max_poll_records=LEARN_BATCH_MAX,
            fetch_min_bytes=FETCH_MIN_BYTES,
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )
        # Started by a worker during a broker restart, it waits: nothing would start it again.
        await self._wait_out(consumer.start, "start")
        try:
            while not stop.is_set():
                records = await self._gather(consumer)
                if records:
                    records = await self.rewind(consumer, records)
                if records:
                    await self.learn(records)
                    self.refreshes.pace(self.clock() - max(r.timestamp for r in records))
                    self.go_back(consumer)
                else:  # idle for IDLE_S: those put off are due (busy, a batch takes them)
                    await self.refresh(self.refreshes.take({}, self.monotonic()), self.clock())
                    await self.withdraw_idle()
                await self._commit(consumer)
        finally:
            await consumer.stop()

    async def _commit(self, consumer: Any) -> None:
        """Commit the group's offsets. The group refuses it after it rebalanced during the
        batch (learners joining or leaving): harmless, since where a learner resumes is the
        offset stored with what it learnt (:meth:`rewind`), not the group's; it used to end
        the learner, which its worker then started again."""
        from aiokafka.errors import CommitFailedError

        try:
            await self._wait_out(consumer.commit, "commit")
        except CommitFailedError:
            log.info("learner: the group rebalanced during the batch; its commit was refused")

    @staticmethod
    async def _gather(consumer: Any) -> list[InboundRecord]:
        """Records for one batch: whatever arrives within :data:`GATHER_S` of the first one
        (at most :data:`LEARN_BATCH_MAX`), or none after :data:`IDLE_S`. Waiting a little lets
        a shopper's burst of events share one pool refresh, which is most of the learner's
        cost."""
        records: list[InboundRecord] = []
        deadline: float | None = None
        while len(records) < LEARN_BATCH_MAX:
            left = IDLE_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            found = await consumer.getmany(
                timeout_ms=int(left * 1000), max_records=LEARN_BATCH_MAX - len(records)
            )
            for batch in found.values():
                for r in batch:
                    records.append(
                        InboundRecord(
                            r.value, r.key, r.topic, r.partition, r.offset, r.timestamp / 1e3
                        )
                    )
            if records and deadline is None:
                deadline = time.monotonic() + GATHER_S
            elif not records:
                break  # nothing yet: let the caller refresh what is due and check for a stop
        return records


def run_learner(settings: Settings) -> int:
    """``socialrec learner``: run until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    """The learner and its follower of erasures, until a signal; the learner ends its batch."""
    from streams.runtime.heap import settle_heap
    from streams.runtime.worker import state_params
    from streams.security import redis_client_for
    from streams.sources.factory import build_sources

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = redis_client_for(settings)
    metrics = WorkerMetrics()
    store = RedisStore(client, state_params(settings), read=EXCLUSIONS_ONLY)
    sources, _content = build_sources(client, settings, store.params, metrics)
    state = LearnerState(client, dedupe_window=settings.dedupe_window)
    learner = Learner(settings, store, sources, state, metrics)
    settle_heap()
    runner = asyncio.ensure_future(learner.run(stop))
    # An erasure honoured by any worker: forget whom this learner refreshed or put off.
    forgets = ForgetFollower(
        settings, learner.forget_erased, metrics, f"{learner_group(settings)}-forget"
    )
    following = asyncio.ensure_future(forgets.run())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([runner, stopped], return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        runner.result()  # a crash is reported, not swallowed
    else:  # it finishes its batch, then stops; a batch waiting out an outage is given up
        await asyncio.wait([runner], timeout=STOP_GRACE_S)
        if not runner.done():
            log.warning("learner: stopped in a batch waiting out an outage; it is learnt again")
            runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    following.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await following  # its consumer stopped
    await client.aclose()
