"""The ``socialrec`` command. Heavy modules are imported only by the subcommand that needs them,
so ``socialrec infra status`` answers quickly."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from streams.config import Settings, load_settings

Handler = Callable[[Settings, argparse.Namespace], int]


def _infra(settings: Settings, args: argparse.Namespace) -> int:
    from streams.ops import infra

    return infra.run_command(settings, args.action, services=args.services)


def _topics(settings: Settings, args: argparse.Namespace) -> int:
    from streams.ops import topics

    return topics.run_apply(settings, dry_run=args.dry_run)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime import launch

    return launch.run_worker(settings)


def _api(settings: Settings, args: argparse.Namespace) -> int:
    from streams.http import serving

    return serving.run_api(settings, port=args.port, reuse_port=args.reuse_port or None)


def _learner(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime import learner

    return learner.run_learner(settings)


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools import simulate

    if args.csv:
        from streams.tools.evaluate.export import write_simulated

        return write_simulated(
            args.csv,
            args.catalog_csv,
            users=args.users,
            items=args.items,
            events=args.events,
            seed=args.seed,
            mean_gap_s=args.mean_gap_s,
        )
    if args.catalog_csv:
        raise SystemExit("socialrec simulate: --catalog-csv goes with --csv")
    return simulate.run_simulate(
        settings,
        users=args.users,
        items=args.items,
        events=args.events,
        rate=args.rate,
        seed=args.seed,
        catalog=not args.no_catalog,
    )


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools import demo

    return demo.run_demo(settings, rate=args.rate, seconds=args.seconds, seed=args.seed)


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.bench.command import run_bench
    from streams.tools.bench.readers import ReadLoad

    events = args.events if args.events is not None else (5_000_000 if args.soak else 20_000)
    default = "docs/soak.json" if args.soak else "docs/benchmarks.json"
    output = args.output or ("docs/scaling.json" if args.workers else default)
    return run_bench(
        settings,
        events=events,
        output=output,
        seed=args.seed,
        rate=args.rate,
        seconds=args.seconds,
        soak_chunk=args.chunk if args.soak else 0,
        readers=ReadLoad(args.readers, args.read_rate) if args.readers else None,
        workers=args.workers,
    )


def _worker_counts(text: str) -> tuple[int, ...]:
    """``--workers 1,2,3`` as (1, 2, 3); each count from 1 to 12.

    >>> _worker_counts("1,2,3")
    (1, 2, 3)
    >>> _worker_counts("0,2")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: worker counts go from 1 to 12, e.g. 1,2,3
    """
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from None
    if not counts or not all(1 <= n <= 12 for n in counts):
        raise argparse.ArgumentTypeError("worker counts go from 1 to 12, e.g. 1,2,3")
    return counts


def _chaos(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from streams.tools.chaos import FULL_FAULTS, ONE_OF_EACH, Plan
    from streams.tools.chaos_report import run_command

    plan = Plan(
        events=args.events,
        rate=args.rate,
        seed=args.seed,
        freeze_s=args.freeze_s,
        faults=ONE_OF_EACH if args.one_each else FULL_FAULTS,
    )
    return run_command(settings, plan, Path(args.doc) if args.doc else None)


def _eval(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools import evaluate

    return evaluate.run_eval(
        settings,
        args.events,
        fmt=args.format,
        catalog_path=args.catalog,
        as_json=args.json,
        plots=args.plots,
        split=args.split,
        train_fraction=args.train_fraction,
        frozen=args.frozen,
        folds=args.cv,
        negatives=args.negatives,
        seed=args.seed,
        models=[name.strip() for name in args.models.split(",") if name.strip()],
        jobs=args.jobs,
        fixed_knobs=args.fixed_knobs,
        ablation=args.ablation,
        ghost_follows=args.ghost_follows,
    )


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from streams.http import access

    return access.run_keys(args.action, args.role, args.merchant, args.key_file, args.keys_file)


def _host_link(settings: Settings, args: argparse.Namespace) -> int:
    from streams.http import access

    return access.run_host_link(settings, args.stream, args.ttl, args.base)


def _cluster_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the scaled-out layout: three Kafka brokers (replication 3) and a Redis Cluster "
        "(the same as SOCIALREC_CLUSTER=true)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Every command and its flags. Long on purpose: one declaration per flag, read top to
    bottom like the README's command table; splitting it would only scatter the help texts."""
    parser = argparse.ArgumentParser(
        prog="socialrec", description="Real-time recommendations for social commerce."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("infra", help="start, stop or inspect the local Kafka broker and Redis")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument(
        "--services",
        default="kafka,redis",
        help="comma-separated subset of kafka,redis (default: both)",
    )
    _cluster_flag(p)
    p.set_defaults(handler=_infra)

    p = sub.add_parser("topics", help="create or reconcile the topics declared in topics.yaml")
    p.add_argument("action", choices=["apply"])
    p.add_argument("--dry-run", action="store_true", help="report drift, change nothing")
    _cluster_flag(p)
    p.set_defaults(handler=_topics)

    p = sub.add_parser("worker", help="run the Faust worker (events in, recommendations out)")
    p.set_defaults(handler=_worker)

    p = sub.add_parser(
        "api",
        help="serve the HTTP API and live pages from what the workers keep in Redis (any "
        "number of copies, apart from the workers)",
    )
    p.add_argument("--port", type=int, help="listen here (default SOCIALREC_API_PORT, 6067)")
    p.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT, so several copies share one port (SOCIALREC_API_REUSE_PORT)",
    )
    p.set_defaults(handler=_api)

    p = sub.add_parser("learner", help="run the learner alone (SOCIALREC_LEARNER=external)")
    p.set_defaults(handler=_learner)
    p = sub.add_parser("keys", help="make an API key (or a host-link secret)")
    p.add_argument("action", choices=["new", "link-secret"])
    p.add_argument("--role", choices=["frontend", "merchant", "operator"])
    p.add_argument("--merchant", help="the merchant a merchant key may read")
    p.add_argument(
        "--key-file",
        type=Path,
        help="write the key to this file (mode 0600; kept if it exists) instead of printing it,"
        " e.g. monitoring/secrets/operator.key for Prometheus",
    )
    p.add_argument("--keys-file", type=Path, help="add the key's line to this keys file")
    p.set_defaults(handler=_keys)

    p = sub.add_parser("host-link", help="a signed link to one stream's live page, for a host")
    p.add_argument("--stream", required=True, help="the live stream id")
    p.add_argument("--ttl", default="8h", help="valid for (90s, 30m, 8h, 2d; at most 7 days)")
    p.add_argument("--base", help="the worker's public URL (default: its web host and port)")
    p.set_defaults(handler=_host_link)

    p = sub.add_parser("simulate", help="produce a catalog and a synthetic event stream")
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--events", type=int, default=10_000, help="0 = run until interrupted")
    p.add_argument("--rate", type=float, default=200.0, help="events per second (0 = flat out)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-catalog", action="store_true", help="skip producing the catalog")
    p.add_argument(
        "--csv", help="write the stream as `socialrec eval` CSV to this file instead (no Kafka)"
    )
    p.add_argument("--catalog-csv", help="with --csv: the catalogue as CSV to this file")
    p.add_argument(
        "--mean-gap-s", type=float, default=0.5, help="with --csv: mean seconds between events"
    )
    p.set_defaults(handler=_simulate)

    p = sub.add_parser("demo", help="infra, topics, worker and simulator with a live view")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0 = Ctrl-C)")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(handler=_demo)

    p = sub.add_parser("bench", help="measure throughput and latency on the real path")
    p.add_argument("--events", type=int, default=None, help="default 20,000 (soak: 5 million)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument(
        "--output",
        default=None,
        help="where to keep the figures (docs/benchmarks.json; soak: docs/soak.json; "
        "workers: docs/scaling.json)",
    )
    p.add_argument(
        "--soak",
        action="store_true",
        help="instead: one worker through --events over 100,000 users x 50,000 items, in chunks",
    )
    p.add_argument("--chunk", type=int, default=1_000_000, help="soak: events per report")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="events/s of the latency scenario (default: a third of the measured capacity)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="how long the latency scenario runs (default: 20 s, at most --events events)",
    )
    p.add_argument(
        "--readers",
        type=int,
        default=0,
        help="also run the latency scenario with this many concurrent HTTP readers on a "
        "`socialrec api` (e.g. 100; default 0: off)",
    )
    p.add_argument(
        "--read-rate",
        type=float,
        default=None,
        help="the readers' requests/s in all, each request's latency counted from when it was "
        "due (default: closed-loop, each reader asks again as soon as it is answered)",
    )
    p.add_argument(
        "--workers",
        type=_worker_counts,
        default=(),
        help="instead: the stream through 1, 2, ... workers in one group, e.g. 1,2,3 "
        "(aggregate events/s, CPU per event; kept in docs/scaling.json)",
    )
    p.set_defaults(handler=_bench)

    from streams.tools.chaos import Plan

    p = sub.add_parser("chaos", help="a stream through the real servers while faults hit them")
    p.add_argument("--events", type=int, default=Plan.events)
    p.add_argument("--rate", type=float, default=Plan.rate, help="events/s, steady")
    p.add_argument("--seed", type=int, default=Plan.seed, help="the stream's and the schedule's")
    p.add_argument("--freeze-s", type=float, default=Plan.freeze_s, help="how long Redis freezes")
    p.add_argument(
        "--one-each", action="store_true", help="one fault of each kind (default: 3 worker kills)"
    )
    p.add_argument(
        "--doc", default="docs/reliability.md", help="where to keep the table ('' = nowhere)"
    )
    p.set_defaults(handler=_chaos)

    p = sub.add_parser("eval", help="replay a CSV of events offline and report quality metrics")
    p.add_argument("events", help="events CSV (user_id,item_id,event_type,timestamp[,...])")
    p.add_argument("--format", choices=["csv", "taobao"], default="csv", help="input format")
    p.add_argument("--catalog", help="item features CSV (header with item_id)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots into DIR")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--split", choices=["temporal"], help="train on the first part by time")
    split.add_argument("--cv", type=int, metavar="K", help="K-fold cross-validation by user")
    p.add_argument("--train-fraction", type=float, default=0.8, help="with --split temporal")
    p.add_argument("--frozen", action="store_true", help="--split temporal: no learning in test")
    p.add_argument("--negatives", type=int, default=20, help="sampled per request for the AUC")
    p.add_argument("--seed", type=int, default=0, help="seed of the negative sampling")
    p.add_argument(
        "--models",
        default="hybrid",
        help="comma-separated: hybrid (all sources, fixed blend), hybrid+ranker (learned "
        "ranker), itemcf (item-CF and social only); the first is reported, the rest compared",
    )
    p.add_argument(
        "--jobs",
        type=int,
        choices=[1, 2],
        default=None,
        help="processes: 2 runs the hybrid's MF, content, user-CF and FBT beside the replay "
        "(same figures; default 2 when two or more cores are available), 1 runs everything "
        "in one",
    )
    p.add_argument(
        "--fixed-knobs",
        action="store_true",
        help="the configured blend, half-life and shrinkage, not learned from the stream",
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help="also the first hybrid with each source switched off in turn (one assembly more "
        "per source and request)",
    )
    p.add_argument(
        "--ghost-follows",
        action="store_true",
        help="point every follow at a user who never acts: the same users and requests, no "
        "social signal (compare with a run without it)",
    )
    p.set_defaults(handler=_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(**({"cluster": True} if getattr(args, "cluster", False) else {}))
    handler: Handler = args.handler
    return handler(settings, args)


if __name__ == "__main__":
    sys.exit(main())
