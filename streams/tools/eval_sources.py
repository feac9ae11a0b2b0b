"""The evaluation's extra sources (MF, content, user-CF, FBT) in a second process.

A replay is sequential: each request needs every model as it was after the events before it.
But the extra sources never read the item-CF state or the assembly, only the events and each
request's user, time and excluded items, which the replay's protocol fixes in advance
(:func:`models.hybrid.source_requests`). So a forked child replays the same events through the
sources and streams every request's pools, in batches, while the parent learns item-CF and
assembles: on two cores the two halves run side by side. The figures are identical to an
in-process replay (a test replays both ways and compares every number).

The child is forked, not spawned: it inherits the events and the catalogue without pickling
them. Each :class:`SourcesReader` is one hybrid's view of the stream (``hybrid`` and
``hybrid+ranker`` share the same sources, so they share one child).
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import sys
import traceback
from array import array
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager
from itertools import repeat
from multiprocessing.connection import Connection
from types import TracebackType

from models.evaluation import Answer, AnswersAhead, Scored
from models.events import Event
from models.hybrid import SourcePools, source_requests
from models.recommend import Pool, Source

#: Requests per message: large enough that pickling and the pipe cost little per request,
#: small enough that the parent waits for little more than one batch at the start.
BATCH = 16

#: Linux's F_SETPIPE_SZ, and the pipe buffer asked for: the child can then run this far
#: ahead of the replay without blocking on a full pipe (a thread draining it instead cost
#: more in contention for the interpreter lock than it saved).
F_SETPIPE_SZ = 1031
PIPE_BYTES = 1 << 20

#: A pool as sent: ``(ids joined by NUL, scores as float64 bytes, the reasons every entry
#: shares)``, or the pool itself when its entries have reasons of their own (FBT's). Unpickling
#: fifty ``(score, reasons)`` tuples per source and request cost the replay more than any of its
#: own steps; a string, a buffer and one ``dict(zip(...))`` cost a fraction of it.
Packed = tuple[str, bytes, object] | Pool

#: One request as the child sends it: user, time, hash of the excluded set, the sources' pools,
#: and the answers of the models asked ahead (the baselines), if any.
Request = tuple[str, float, int, dict[Source, Packed], list[Answer] | None]


def pack(pools: dict[Source, Pool]) -> dict[Source, Packed]:
    """The pools in their compact form where they have one (see :data:`Packed`).

    >>> from models.recommend import Reason
    >>> why = (Reason(None, 1.0, action="taste_match"),)
    >>> pools = {Source.MF: {"a": (0.75, why), "b": (0.5, why)}, Source.FBT: {"c": (1.0, ())}}
    >>> unpack(pack(pools)) == pools
    True
    """
    packed: dict[Source, Packed] = {}
    for source, pool in pools.items():
        entries = list(pool.values())
        shared = entries[0][1] if entries else None
        ids = "\0".join(pool)
        if (
            entries
            and all(reasons is shared for _, reasons in entries)
            and ids.count("\0") == len(entries) - 1
        ):
            scores = array("d", [score for score, _ in entries]).tobytes()
            packed[source] = (ids, scores, shared)
        else:
            packed[source] = pool
    return packed


def unpack(packed: dict[Source, Packed]) -> dict[Source, Pool]:
    """The pools :func:`pack` packed, equal to the originals."""
    pools: dict[Source, Pool] = {}
    for source, entry in packed.items():
        if isinstance(entry, dict):
            pools[source] = entry
            continue
        ids, raw, reasons = entry
        scores = array("d")
        scores.frombytes(raw)
        pools[source] = dict(zip(ids.split("\0"), zip(scores, repeat(reasons)), strict=True))  # type: ignore[arg-type]
    return pools


#: Builds, in the child, the models to ask ahead from the child's sources (so a baseline can
#: share a source's model, such as the item-kNN).
AskAhead = Callable[[SourcePools], AnswersAhead]


class SourcesProcessError(RuntimeError):
    """The child failed, or the parent asked for a request the child did not send."""


def _serve(
    conn: Connection,
    events: Sequence[Event],
    build: Callable[[], SourcePools],
    exclude_items: AbstractSet[str],
    is_test: Callable[[int, Event], bool] | None,
    learn_test: bool,
    ask: AskAhead | None = None,
) -> None:
    """The child: replay, send ``("batch", [request, ...])`` messages, then ``("end", n)``."""
    try:
        batch: list[Request] = []
        sent = 0
        sources = build()
        ahead = ask(sources) if ask is not None else None
        answers: list[list[Answer]] = []

        def on_request(event: Event, touched: AbstractSet[str]) -> None:
            assert ahead is not None
            answers.append(ahead.answer(event, touched))

        for user, ts, excluded, pools in source_requests(
            events,
            sources,
            exclude_items,
            is_test=is_test,
            learn_test=learn_test,
            on_request=None if ahead is None else on_request,
            on_learn=None if ahead is None else ahead.learn,
        ):
            batch.append((user, ts, excluded, pack(pools), answers.pop() if answers else None))
            if len(batch) >= BATCH:
                conn.send(("batch", batch))
                sent += len(batch)
                batch = []
        conn.send(("batch", batch))
        conn.send(("end", (sent + len(batch), ahead.values() if ahead is not None else {})))
    except Exception:
        # Any failure goes to the parent, which raises it with this traceback; the child
        # only exits non-zero (no second copy of the traceback on stderr).
        conn.send(("error", traceback.format_exc()))
        conn.close()
        sys.exit(1)
    conn.close()


class SourcesProcess(AbstractContextManager["SourcesProcess"]):
    """A forked child computing every request's extra-source pools ahead of the replay.

    ``build`` makes the sources in the child (e.g. loads the catalogue into the content
    model); ``exclude_items``, ``is_test`` and ``learn_test`` are the replay's.
    """

    def __init__(
        self,
        events: Sequence[Event],
        build: Callable[[], SourcePools],
        exclude_items: AbstractSet[str] = frozenset(),
        *,
        is_test: Callable[[int, Event], bool] | None = None,
        learn_test: bool = True,
        ask: AskAhead | None = None,
    ) -> None:
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        # Where the system's limit is lower the default buffer works, a little slower.
        with contextlib.suppress(OSError):
            fcntl.fcntl(receiver.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        self._process = context.Process(
            target=_serve,
            args=(sender, events, build, exclude_items, is_test, learn_test, ask),
            name="socialrec-eval-sources",
            daemon=True,  # never outlives an interrupted evaluation
        )
        self._process.start()
        sender.close()  # the parent's copy: the child's close is then seen as end of file
        self._conn = receiver
        self._results: list[Request] = []
        self._first = 0  # the request number of _results[0]
        self._cursors: list[int] = []
        self._ended = False
        self._failed = False
        #: What the models asked ahead learnt (their knobs), by name, once the child ended.
        self.values: dict[str, dict[str, object]] = {}

    def reader(self) -> SourcesReader:
        """One more consumer of the stream, starting at the first request."""
        if self._first:
            raise SourcesProcessError("a reader must be added before the replay starts")
        self._cursors.append(0)
        return SourcesReader(self, len(self._cursors) - 1)

    def asked(self, names: Sequence[str]) -> list[AskedAhead]:
        """The models the child asks ahead (``ask``), as recommenders for the replay, under
        their ``names`` in the order ``ask`` builds them."""
        return [AskedAhead(self, self.reader()._reader, n, name) for n, name in enumerate(names)]

    def _next(self, reader: int) -> Request:
        position = self._cursors[reader]
        while position - self._first >= len(self._results):
            self._receive()
        request = self._results[position - self._first]
        self._cursors[reader] = position + 1
        done = min(self._cursors) - self._first
        if done >= BATCH:  # every reader is past these: let them go
            del self._results[:done]
            self._first += done
        return request

    def _receive(self) -> None:
        if self._ended:
            raise SourcesProcessError(
                "the replay asked for more requests than the sources process computed"
            )
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            self._failed = True
            self._process.join()
            raise SourcesProcessError(
                f"the sources process stopped without a word (exit code {self._process.exitcode})"
            ) from None
        if kind == "error":
            self._failed = True
            raise SourcesProcessError(f"the sources process failed:\n{payload}")
        if kind == "end":
            self._ended = True
            self.values = payload[1]
            return
        self._results.extend(payload)

    def close(self) -> None:
        """Stop the child (at once if the replay ended early) and release the pipe."""
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._conn.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and not self._failed:
            # The replay is done: read what the child learnt, then stop it.
            while not self._ended:
                self._receive()
        self.close()


class SourcesReader:
    """:class:`~models.hybrid.SourcePools` for one hybrid: the next request's pools from the
    child. ``learn`` does nothing here: the child learns every event itself."""

    def __init__(self, process: SourcesProcess, reader: int) -> None:
        self._process = process
        self._reader = reader

    def learn(self, event: Event) -> None:
        """The child has learnt (or will learn) the event: nothing to do."""

    def pools(self, user_id: str, excluded: AbstractSet[str], now: float) -> dict[Source, Pool]:
        user, ts, excluded_hash, pools, _ = self._process._next(self._reader)
        # The child derives each request from the same protocol; if the parent ever asks for
        # another one (another user, time or excluded set), the figures would be wrong.
        if (user, ts, excluded_hash) != (user_id, now, hash(frozenset(excluded))):
            raise SourcesProcessError(
                "the sources process and the replay disagree on a request "
                "(the replay's protocol and models.hybrid.source_requests have diverged)"
            )
        return unpack(pools)


class AskedAhead:
    """A model the child asked ahead (:class:`models.evaluation.AnswersAhead`), as a
    :class:`~models.evaluation.Recommender` for the replay: each request's list and scores
    are read from the child, and checked to be the request the replay asks (same user, time
    and scored items). It learns nothing here: the child taught it."""

    def __init__(self, process: SourcesProcess, reader: int, index: int, name: str) -> None:
        self._process = process
        self._reader = reader
        self._index = index
        self.name = name
        self._scores: tuple[list[float], int] | None = None

    @property
    def knobs(self) -> dict[str, object] | None:
        """The knobs the model learnt in the child (read once the replay ended)."""
        return self._process.values.get(self.name)

    def learn(self, event: Event) -> None:
        """The child has taught the model: nothing to do."""

    def recommend(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]:
        user, ts, _, _, answers = self._process._next(self._reader)
        if (user, ts) != (user_id, now) or answers is None:
            raise SourcesProcessError(
                f"the sources process and the replay disagree on a request of {self.name}"
            )
        recs, scores, asked = answers[self._index]
        self._scores = (scores, asked)
        return [Scored(*rec) for rec in recs[:k]]

    def candidate_scores(self, user_id: str, item_ids: Sequence[str], now: float) -> list[float]:
        if self._scores is None or self._scores[1] != hash(tuple(item_ids)):
            raise SourcesProcessError(
                f"the sources process and the replay disagree on the items {self.name} scores"
            )
        return self._scores[0]
