#!/usr/bin/env bash
# Where a running worker's time goes at a steady rate: starts `socialrec worker` (and its child
# learner) and `socialrec simulate --rate RATE`, waits WARM seconds, then reads for SECONDS:
# the worker's own histograms (/metrics: stage, batch, Redis round trip, event to publish;
# means, and p50/p99 as the bound of the bucket they fall in),
# the CPU seconds of the worker, the learner, Redis and the local broker per event, and Redis's
# busiest commands.
# Uses the servers and settings of the environment (SOCIALREC_*; `socialrec infra up` first),
# flushes the Redis database it points at, and stops what it started.
#   usage: scripts/worker-costs.sh RATE [SECONDS=30] [WARM=15]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RATE=${1:?events per second}
SECONDS_=${2:-30}
WARM=${3:-15}
BIN=${BIN:-.venv/bin}
PORT=${SOCIALREC_WEB_PORT:-6066}
OUT=$(mktemp -d)
export SOCIALREC_AUTH=off  # /metrics without a key: this worker listens on loopback only
redis() { "$BIN/python" - "$@" <<'PY'
import sys, redis
from streams.config import Settings
client = redis.Redis.from_url(Settings().redis_url)
if sys.argv[1] == "flush":
    client.flushdb()
elif sys.argv[1] == "resetstat":
    client.config_resetstat()
elif sys.argv[1] == "cpu":
    info = client.info("cpu"); print(info["used_cpu_user"] + info["used_cpu_sys"])
else:
    stats = client.info("commandstats")
    for name, s in sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:12]:
        print(f"  {name[8:]:<18} {s['calls']:>9} calls {s['usec_per_call']:>9.1f} µs/call")
PY
}
cpu_s() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
# The broker `socialrec infra up` started (its pid file), if that is where the worker points.
BROKER=$("$BIN/python" -c "from streams.config import Settings; print(Settings().data_dir)")/kafka.pid
BROKER=$(cat "$BROKER" 2>/dev/null || true)

redis flush
"$BIN/python" -m streams.cli worker >"$OUT/worker.log" 2>&1 &
WORKER=$!
trap 'kill $WORKER ${SIM:-} 2>/dev/null || true; wait 2>/dev/null || true' EXIT
until curl -sf "127.0.0.1:$PORT/health" >/dev/null; do
    kill -0 "$WORKER" 2>/dev/null || { tail -5 "$OUT/worker.log"; echo "the worker exited" >&2; exit 1; }
    sleep 0.5
done
"$BIN/python" -m streams.cli simulate --no-catalog --rate "$RATE" \
    --events $((RATE * (WARM + SECONDS_ + 30))) >"$OUT/simulate.log" 2>&1 &
SIM=$!
sleep "$WARM"
LEARNER=$(pgrep -P "$WORKER" -f "streams.cli learner" || true)
snapshot() {
    curl -s "127.0.0.1:$PORT/metrics" >"$OUT/metrics-$1"
    cpu_s "$WORKER" >"$OUT/worker-cpu-$1"
    if [ -n "$LEARNER" ]; then cpu_s "$LEARNER"; else echo 0; fi >"$OUT/learner-cpu-$1"
    redis cpu >"$OUT/redis-cpu-$1"
    if [ -n "$BROKER" ] && [ -e "/proc/$BROKER" ]; then cpu_s "$BROKER"; else echo 0; fi >"$OUT/broker-cpu-$1"
}
snapshot 1
redis resetstat
sleep "$SECONDS_"
snapshot 2
"$BIN/python" - "$OUT" <<'PY'
import re, sys
out = sys.argv[1]
def metrics(n):
    found = {}
    for line in open(f"{out}/metrics-{n}"):
        m = re.match(r"(\S+?)(\{.*\})? (\S+)$", line.strip())
        if m and not line.startswith("#"):
            found[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return found
a, b = metrics(1), metrics(2)
delta = lambda name: {k[1]: v - a.get(k, 0.0) for k, v in b.items() if k[0] == name}
value = lambda name, n: float(open(f"{out}/{name}-{n}").read())
events = sum(delta("socialrec_events_consumed_total").values()) or 1.0
per = lambda name: 1e3 * (value(name, 2) - value(name, 1)) / events
print(f"{events:.0f} events; CPU per event: worker {per('worker-cpu'):.2f} ms, "
      f"learner {per('learner-cpu'):.2f} ms, Redis {per('redis-cpu'):.2f} ms, "
      f"broker {per('broker-cpu'):.2f} ms (0: not the local one)")
for name in ("stage_seconds", "batch_processing_seconds", "redis_roundtrip_seconds",
             "event_to_publish_seconds", "batch_size_events"):
    sums, counts = delta(f"socialrec_{name}_sum"), delta(f"socialrec_{name}_count")
    buckets = delta(f"socialrec_{name}_bucket")
    for label, total in sums.items():
        if counts.get(label):
            unit, scale = ("", 1) if "size" in name else (" ms", 1e3)
            line = f"  {name}{label}: mean {total / counts[label] * scale:.2f}{unit}"
            # Quantiles as the upper bound of the bucket they fall in (the histogram's resolution).
            mine = sorted(
                (float(re.search(r'le="([^"]+)"', k).group(1)), v)
                for k, v in buckets.items()
                if re.sub(r',?le="[^"]+"', "", k).replace("{}", "") == label
            )
            for q in (0.5, 0.99):
                bound = next((b for b, n in mine if n >= q * counts[label]), None)
                if bound is not None:
                    line += f", p{q * 100:g} <= {bound * scale:g}{unit}"
            print(line)
# The event loop's stalls: how many wake-ups came later than each bound (of the 50 ms probes).
stalls = delta("socialrec_event_loop_lag_seconds_bucket")
total = delta("socialrec_event_loop_lag_seconds_count").get("", 0.0)
late = {float(re.search(r'le="([^"]+)"', k).group(1)): total - v for k, v in stalls.items()}
print("  event loop stalls: " + ", ".join(
    f"{n:.0f} over {b * 1e3:g} ms" for b, n in sorted(late.items()) if 0.005 <= b <= 0.5
) + f" (of {total:.0f} probes)")
PY
echo "Redis's busiest commands over the window:"
redis stats
