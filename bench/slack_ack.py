"""Slack ack latency: our full stack side by side with a bare slack-bolt app (the floor).

N simulated users at once each run ``/request-access`` -> submit the form -> three
approvals (manager, resource owner, admin), with correctly signed requests over HTTP to
``clearance serve`` in its own process, which talks to a local Slack Web API server (the
fake in ``tests/fakes/slack_api.py``, in this process). ``--rounds`` repeats that with new
users, for more samples. Every request the users sent is then replayed, with fresh
signatures and at the same moments into the run, against the floor: a bare bolt
``AsyncApp`` in its own process whose listeners only ``ack()``, served the same way
(aiohttp, ``to_bolt_request``).

Ack latency is the HTTP round trip of each request as Slack would see it (Slack needs the
answer within 3 s). Prints p50/p99 per interaction, the ratios, and the CPU each server
process spent per request.

    .venv/bin/python bench/slack_ack.py [--users 50] [--rounds 3] [--database postgres|sqlite]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import PG_ADMIN_DEFAULT, run_against_database
from bench.slack_ack_report import report
from bench.slack_ack_run import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="users at once")
    parser.add_argument("--rounds", type=int, default=3, help="workflows per user slot")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pg-admin", default=PG_ADMIN_DEFAULT)
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument("--profile", type=Path, help="cProfile clearance serve into this file")
    args = parser.parse_args()
    (ours, floor), database = run_against_database(
        args.database,
        args.pg_admin,
        args.keep,
        "clearance-slack-bench-",
        lambda work, url: bench(args, work, url),
    )
    report(args, database, ours, floor)


if __name__ == "__main__":
    main()
