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
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager
from multiprocessing.connection import Connection
from types import TracebackType

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

Request = tuple[str, float, int, dict[Source, Pool]]


class SourcesProcessError(RuntimeError):
    """The child failed, or the parent asked for a request the child did not send."""


def _serve(
    conn: Connection,
    events: Sequence[Event],
    build: Callable[[], SourcePools],
    exclude_items: AbstractSet[str],
    is_test: Callable[[int, Event], bool] | None,
    learn_test: bool,
) -> None:
    """The child: replay, send ``("batch", [request, ...])`` messages, then ``("end", n)``."""
    try:
        batch: list[Request] = []
        sent = 0
        sources = build()
        for request in source_requests(
            events, sources, exclude_items, is_test=is_test, learn_test=learn_test
        ):
            batch.append(request)
            if len(batch) >= BATCH:
                conn.send(("batch", batch))
                sent += len(batch)
                batch = []
        conn.send(("batch", batch))
        conn.send(("end", sent + len(batch)))
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
    ) -> None:
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        # Where the system's limit is lower the default buffer works, a little slower.
        with contextlib.suppress(OSError):
            fcntl.fcntl(receiver.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        self._process = context.Process(
            target=_serve,
            args=(sender, events, build, exclude_items, is_test, learn_test),
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

    def reader(self) -> SourcesReader:
        """One more consumer of the stream, starting at the first request."""
        if self._first:
            raise SourcesProcessError("a reader must be added before the replay starts")
        self._cursors.append(0)
        return SourcesReader(self, len(self._cursors) - 1)

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
            self._process.join()
            raise SourcesProcessError(
                f"the sources process stopped without a word (exit code {self._process.exitcode})"
            ) from None
        if kind == "error":
            raise SourcesProcessError(f"the sources process failed:\n{payload}")
        if kind == "end":
            self._ended = True
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
        user, ts, excluded_hash, pools = self._process._next(self._reader)
        # The child derives each request from the same protocol; if the parent ever asks for
        # another one (another user, time or excluded set), the figures would be wrong.
        if (user, ts, excluded_hash) != (user_id, now, hash(frozenset(excluded))):
            raise SourcesProcessError(
                "the sources process and the replay disagree on a request "
                "(the replay's protocol and models.hybrid.source_requests have diverged)"
            )
        return pools
