"""What the Slack benchmark prints: p50/p99 per interaction for ours and the floor, and CPU."""

from __future__ import annotations

import argparse

from bench.harness import pct
from bench.slack_ack_run import Run

KINDS = ("command", "view_submission", "approve")


def report(args: argparse.Namespace, database: str, ours: Run, floor: Run) -> None:
    print()
    print(
        f"Slack ack latency: {args.users} users at once x {args.rounds} rounds, "
        f"clearance serve on {database} vs a bare bolt AsyncApp (listeners only ack)"
    )
    print(
        f"{'interaction':<17}{'n':>5}{'ours p50':>10}{'p99':>9}"
        f"{'floor p50':>11}{'p99':>9}{'p50 ratio':>11}{'p99 ratio':>11}"
    )
    for kind in KINDS:
        a, b = ours.timings[kind], floor.timings[kind]
        print(
            f"{kind:<17}{len(a):>5}{pct(a, 0.5):>8.1f}ms{pct(a, 0.99):>7.1f}ms"
            f"{pct(b, 0.5):>9.1f}ms{pct(b, 0.99):>7.1f}ms"
            f"{pct(a, 0.5) / pct(b, 0.5):>10.2f}x{pct(a, 0.99) / pct(b, 0.99):>10.2f}x"
        )
    for label, run in (("ours", ours), ("floor", floor)):
        per_request = run.cpu.used["server"] * 1000 / run.requests
        print(
            f"{label:<6} server CPU {per_request:.1f} ms per request; {run.requests} requests"
            f" in {run.seconds:.1f}s; machine busy {run.cpu.machine_busy:.0%}"
        )
    print(
        "ours includes, for each workflow, the work after the acks (DMs, cards, the grant"
        " through the Slack user-group connector); the floor only acks."
    )
