"""When the learner refreshes each user's pools, and how often it can afford to.

The pools' sources (MF, content, user-CF, FBT) are the slow-moving part of a list (the
publish path adds item-CF and social proof from the user's fresh state), and computing them
is most of the learner's work: a few ms per user, against well under a millisecond to learn
an event. So learning is never put off, and refreshing is paced:

- a user is refreshed at most once per interval; a shopper acting again sooner is refreshed
  when the interval is up, with every event of the burst in that one refresh;
- the interval follows the learner's lag. Behind :data:`LAG_TARGET_S` it doubles (up to
  :data:`LONGEST_S`), so a busy learner spends its time learning and the pools lag a little
  more instead of the whole learner falling behind; with the lag under half the target it
  shrinks by a quarter back towards the configured interval. The interval in force is kept
  with the learner's progress and shown on the Operations dashboard.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The learner's lag it paces its refreshes for: half the 1 s it may lag in all.
LAG_TARGET_S = 0.5
#: The longest the interval grows: a pool is at most this much older than its user's events.
LONGEST_S = 30.0
#: The interval a configured 0 ("every batch") backs off to first.
SHORTEST_BACKOFF_S = 0.25


class Refreshes:
    """Which touched users to refresh now; ``pace`` adapts the interval to the lag.

    >>> r = Refreshes(1.0)
    >>> r.take(["ann", "bob"], now=10.0), r.take(["ann"], now=10.75)
    (['ann', 'bob'], [])
    >>> r.take([], now=11.0)
    ['ann']
    >>> r.pace(lag_s=3.0), r.pace(lag_s=2.0)  # behind: back off
    (2.0, 4.0)
    >>> r.pace(lag_s=0.4), r.pace(lag_s=0.1), r.pace(lag_s=0.1)  # near the target: hold; under
    (4.0, 3.0, 2.25)
    """

    def __init__(self, interval_s: float) -> None:
        self.configured_s = interval_s
        self.interval_s = interval_s
        self._last: dict[str, float] = {}  # users refreshed within the interval
        self._due: dict[str, float] = {}  # users put off -> when they are due

    def take(self, users: Iterable[str], now: float) -> list[str]:
        """The users to refresh now (``users`` touched and free, or put off and due)."""
        ready = [u for u, at in self._due.items() if at <= now]
        for user in ready:
            del self._due[user]
        for user in users:
            last = self._last.get(user)
            if last is None or now - last >= self.interval_s:
                if user not in ready:
                    ready.append(user)
            elif user not in self._due:
                self._due[user] = last + self.interval_s
        if len(self._last) > 2 * len(ready) + 1000:  # forget who is past the interval
            self._last = {u: t for u, t in self._last.items() if now - t < self.interval_s}
        for user in ready:
            self._last[user] = now
        return ready

    def users(self) -> list[str]:
        """Every user this remembers (refreshed within the interval, or put off)."""
        return list(self._last.keys() | self._due.keys())

    def forget(self, user_ids: Iterable[str]) -> int:
        """Erasure: drop these users (and any refresh put off for them); returns how many
        were held."""
        held = 0
        for user in user_ids:
            refreshed = self._last.pop(user, None) is not None
            put_off = self._due.pop(user, None) is not None
            held += refreshed or put_off
        return held

    def pace(self, lag_s: float) -> float:
        """Adapt the interval to the learner's lag after a batch; returns the new interval."""
        if lag_s > LAG_TARGET_S:
            longest = max(LONGEST_S, self.configured_s)
            self.interval_s = min(max(2 * self.interval_s, SHORTEST_BACKOFF_S), longest)
        elif lag_s < LAG_TARGET_S / 2 and self.interval_s > self.configured_s:
            shorter = 0.75 * self.interval_s
            self.interval_s = self.configured_s if shorter < SHORTEST_BACKOFF_S else shorter
            self.interval_s = max(self.interval_s, self.configured_s)
        return self.interval_s
