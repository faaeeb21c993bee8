"""scripts/loadtest's command line: a load test, or a capacity search, of any inventory."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .capacity import DEFAULT_STEPS
from .errors import LoadTestError
from .runner import LAYOUTS, NETWORK, RESULTS_ROOT, Options, execute

DESCRIPTION = """\
Load test a running Morpheus platform: readers, API clients and operators, each user
from its own client address on the platform's network and with its own API key, the
production limits on. The report (per endpoint p50/p95/p99, throughput, errors, 429s;
the queue; the comics' times; Locust's HTML report; a chart) goes to
.cache/loadtest/<run>/, and one summary line ends the run. loadtest/README.md has
the details.

  scripts/loadtest                                  100 users, 3 minutes, the local platform
  scripts/loadtest --users 50 --duration 120
  scripts/loadtest --capacity                       step up until API p95 > 2 s or errors > 1%
  scripts/loadtest --inventory inventories/staging --network <the hosts' Docker network>
"""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not 1 or more")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not above 0")
    return value


def steps(text: str) -> list[int]:
    try:
        return [positive_int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of user counts") from None


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(
        prog="scripts/loadtest",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    found.add_argument(
        "--inventory",
        help="the platform's inventory (default: the local layout that runs, "
        f"{LAYOUTS['single']} or {LAYOUTS['multihost']})",
    )
    found.add_argument(
        "--layout",
        choices=sorted(LAYOUTS),
        help="the local layout's inventory (make up LAYOUT=...)",
    )
    found.add_argument("--users", type=positive_int, default=100, help="users (default 100)")
    found.add_argument(
        "--spawn-rate",
        type=positive_float,
        default=10.0,
        help="users started a second (default 10)",
    )
    found.add_argument(
        "--duration", type=positive_float, default=180.0, help="seconds of load (default 180)"
    )
    found.add_argument(
        "--capacity", action="store_true", help="step the user count up until it does not hold"
    )
    found.add_argument(
        "--steps",
        type=steps,
        default=list(DEFAULT_STEPS),
        help="the capacity search's user counts, continued by the last increment "
        f"(default {','.join(map(str, DEFAULT_STEPS))})",
    )
    found.add_argument(
        "--step-duration",
        type=positive_float,
        default=60.0,
        help="seconds measured per capacity step, once its users run (default 60)",
    )
    found.add_argument(
        "--max-users",
        type=positive_int,
        help="continue the capacity steps by their last increment up to this many users "
        "(default: stop after the last step; the network's free addresses cap it)",
    )
    found.add_argument(
        "--network", default=NETWORK, help=f"the platform's Docker network (default {NETWORK})"
    )
    found.add_argument(
        "--drain",
        type=float,
        default=300.0,
        help="seconds to follow unfinished comics after the load (default 300)",
    )
    found.add_argument(
        "--ca-file",
        type=Path,
        help="the CA that verifies the edge (default .cache/local/ca.pem, else the "
        "inventory's smoke_ca_bundle, else the system's)",
    )
    found.add_argument(
        "--keep-comics", action="store_true", help="keep the comics the run made (default: delete)"
    )
    found.add_argument(
        "--results", type=Path, default=RESULTS_ROOT, help="where run folders go (.cache/loadtest)"
    )
    return found


def stop(signum: int, _frame: object) -> None:
    """SIGTERM as Ctrl-C: the run's clean-up (container, keys, comics) still happens."""
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.inventory and args.layout:
        parser().error("give --inventory or --layout, not both")
    if args.ca_file is not None and not args.ca_file.is_file():
        parser().error(f"--ca-file {args.ca_file} is not a file")
    options = Options(
        inventory=args.inventory or (LAYOUTS[args.layout] if args.layout else None),
        users=args.users,
        spawn_rate=args.spawn_rate,
        duration=args.duration,
        capacity=args.capacity,
        steps=args.steps,
        step_seconds=args.step_duration,
        max_users=args.max_users,
        network=args.network,
        drain_seconds=max(0.0, args.drain),
        ca_file=args.ca_file.resolve() if args.ca_file else None,
        keep_comics=args.keep_comics,
        results_root=args.results.resolve(),
    )
    signal.signal(signal.SIGTERM, stop)
    try:
        return execute(options)
    except LoadTestError as error:
        print(f"error: {error}", file=sys.stderr)
        print(f"next: {error.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted (what the run made was removed, as shown above)", file=sys.stderr)
        print("next: rerun when ready.", file=sys.stderr)
        return 130
