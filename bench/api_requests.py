"""API latency: ``POST /api/v1/requests`` (and ``GET /api/v1/requests/{id}``) through
``clearance serve``, side by side with a bare aiohttp app that only verifies the JWT (the
floor).

N clients at once, each a pipeline with its own keep-alive connection, file a request with a
fresh workload token (a jti is accepted once) and, with ``--get`` (the default), read it
back with a token it keeps for its reads; ``--rounds`` times each. The tokens come from the
local OIDC issuer (tests/fakes/oidc_issuer.py, in this process), all signed before timing.
``clearance serve`` runs in its own process, with no chat platform (so no notification
runs), a staged resource (so nothing is granted) and the workload's rate limit set out of
the way. Every call is then replayed, with the same token and at the same moment into the
run, against the floor in its own process: PyJWT ``jwt.decode`` with the same RS256 key and
the same iss, aud, exp and sub checks, answering a JSON 201 (or 200), storing nothing.

Latency is from sending the request to having read the whole answer. Prints p50/p99 per
call, the ratios (ours/floor), and the CPU each server process spent per call.

    .venv/bin/python bench/api_requests.py [--clients 50] [--rounds 20]
        [--database postgres|sqlite] [--no-get] [--profile FILE] [--keep]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_run import Run, bench
from bench.harness import PG_ADMIN_DEFAULT, pct, run_against_database

KINDS = {"POST": "POST /api/v1/requests", "GET": "GET /api/v1/requests/{id}"}


def report(args: argparse.Namespace, database: str, ours: Run, floor: Run) -> None:
    print()
    print(
        f"API latency: {args.clients} clients at once x {args.rounds} rounds, "
        f"clearance serve on {database} vs a bare aiohttp app (JWT verified, JSON answered)"
    )
    print(
        f"{'call':<28}{'n':>6}{'ours p50':>10}{'p99':>9}"
        f"{'floor p50':>11}{'p99':>9}{'p50 ratio':>11}{'p99 ratio':>11}"
    )
    for kind, label in KINDS.items():
        a, b = ours.timings.get(kind, []), floor.timings.get(kind, [])
        if not a:
            continue
        print(
            f"{label:<28}{len(a):>6}{pct(a, 0.5):>8.1f}ms{pct(a, 0.99):>7.1f}ms"
            f"{pct(b, 0.5):>9.1f}ms{pct(b, 0.99):>7.1f}ms"
            f"{pct(a, 0.5) / pct(b, 0.5):>10.2f}x{pct(a, 0.99) / pct(b, 0.99):>10.2f}x"
        )
    for label, run in (("ours", ours), ("floor", floor)):
        per_call = run.cpu.used["server"] * 1000 / run.requests
        print(
            f"{label:<6} server CPU {per_call:.2f} ms per call; {run.requests} calls"
            f" in {run.seconds:.1f}s ({run.requests / run.seconds:.0f}/s);"
            f" machine busy {run.cpu.machine_busy:.0%}"
        )
    print(
        "ours files each request (jti recorded, request and its audit and outbox rows saved,"
        " the call audited); the floor only verifies the token and answers."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="clients at once")
    parser.add_argument("--rounds", type=int, default=20, help="POSTs (and GETs) per client")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--no-get", dest="get", action="store_false", help="only POST, no read-back GET"
    )
    parser.add_argument("--pg-admin", default=PG_ADMIN_DEFAULT)
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument("--profile", type=Path, help="cProfile clearance serve into this file")
    args = parser.parse_args()
    (ours, floor), database = run_against_database(
        args.database,
        args.pg_admin,
        args.keep,
        "clearance-api-bench-",
        lambda work, url: bench(args, work, url),
    )
    report(args, database, ours, floor)


if __name__ == "__main__":
    main()
