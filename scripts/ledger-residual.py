"""What an erasure leaves of a user's pushes to MF's item rows, by the undo ledger's form and
cap: OnlineMF (32 factors, the learner's settings) learns EVENTS simulated events (2,000
users, 5,000 items); after each event the user's touched ledger rows are written and read
back in the stored form (models/mf/rows.py), as if every event were a batch of its own (the
learner rounds once a batch, so this is the most rounding a row gets). Per user: the share of
the exact pushes' energy (squared norm) that the stored rows miss, by rounding and by the cap
keeping only the largest rows (streams/sources/mf_rows.py ``merge_ledger``); what the user's
pushes did to later steps of others is left either way (models/mf/model.py ``forget_user``).
No servers.
    usage: .venv/bin/python scripts/ledger-residual.py [EVENTS=100000]
"""

from __future__ import annotations

import sys

import numpy as np

from models.events import DEFAULT_WEIGHTS
from models.mf import OnlineMF, decode_ledger_rows, encode_ledger_rows
from models.simulator.build import generate_world
from models.simulator.stream import generate_events

FACTORS = 32
CAPS = (128, 64, 48, 32)


def main(events: int) -> None:
    world = generate_world(7, users=2_000, items=5_000)
    mf = OnlineMF(
        FACTORS, 0.05, 0.01, 4, sampling="popularity", pool_size=2_000, track_contributions=True
    )
    stored: dict[str, dict[str, np.ndarray]] = {}
    for event in generate_events(world, 7, count=events):
        weight = DEFAULT_WEIGHTS.get(event.type, 0.0)
        if event.item_id is None or weight == 0.0:
            continue
        before = mf.contributions(event.user_id)
        mf.learn(event.user_id, event.item_id, weight)
        after = mf.contributions(event.user_id)
        rows = stored.setdefault(event.user_id, {})
        touched = [i for i, d in after.items() if i not in before or not (before[i] == d).all()]
        if touched:
            sums = np.array(
                [rows.get(i, 0.0) + after[i] - before.get(i, 0.0) for i in touched], dtype=float
            )
            back = decode_ledger_rows(encode_ledger_rows(sums), FACTORS)
            rows.update(zip(touched, back, strict=True))
    rounding, by_cap = [], {cap: [] for cap in CAPS}
    for user in mf.user_ids():
        exact = mf.contributions(user)
        energy = {i: float(d @ d) for i, d in exact.items()}
        total = sum(energy.values())
        if not total:
            continue
        missed = sum(float((d - stored[user][i]) @ (d - stored[user][i])) for i, d in exact.items())
        rounding.append(missed / total)
        largest = sorted(energy.values(), reverse=True)
        for cap in CAPS:
            by_cap[cap].append(sum(largest[cap:]) / total)
    print(f"{len(rounding)} users, {events:,} events; share of a user's push energy missed:")
    print(f"  by rounding (every row kept): {_spread(rounding)}")
    for cap in CAPS:
        print(f"  by a cap of {cap} rows (exact rows): {_spread(by_cap[cap])}")


def _spread(shares: list[float]) -> str:
    a = np.asarray(shares)
    return f"mean {a.mean():.4f}, p50 {np.median(a):.4f}, p90 {np.quantile(a, 0.9):.4f}"


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
