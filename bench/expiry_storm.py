"""An expiry storm: N grants expiring at the same instant, revoked through slapd, vs slapd's floor.

N ACTIVE requests (built by the real engine, written as Store.save would write them, with a
valid audit chain) all expire at the same instant T against the LDAP connector on a real
slapd. One, then two ``clearance serve`` processes on PostgreSQL (fresh data each time) do
the real work: expire transition -> deprovision row -> LDAP member removal -> confirm_removal.
The clock runs from T until every request has ``deprovisioned_at``; then the group must be
empty, every request EXPIRED with one ``access_removed`` event, and the audit chain intact.
The floor is the same N member removals done directly with ldap3 in one loop (one
connection, MODIFY_DELETE per member) on a freshly re-filled group, before and after the
storms; the best run is the floor. Also printed: CPU per grant of our processes and of
slapd, how busy the whole (shared) machine was, and how many PostgreSQL backends were
waiting on a row lock (the audit chain's head) while the storm ran.

    .venv/bin/python bench/expiry_storm.py [--grants 10000] [--processes 1 2]
        [--tick 0.5] [--lead 15] [--profile DIR] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.expiry_storm_floor import Floor, ldap_floor
from bench.expiry_storm_report import report
from bench.expiry_storm_run import Outcome, run_storm
from bench.expiry_storm_world import policy_text, seed_slapd
from bench.harness import PG_ADMIN_DEFAULT
from tests.fakes.slapd import Slapd


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--lead", type=float, default=15.0, help="seconds from seeding to the expiry instant"
    )
    parser.add_argument("--tick", type=float, default=0.5, help="CLEARANCE_TICK_SECONDS")
    parser.add_argument("--timeout", type=float, default=900, help="limit per storm (seconds)")
    parser.add_argument(
        "--pg-admin",
        default=PG_ADMIN_DEFAULT,
        help="libpq URL of a database the benchmark may create databases from",
    )
    parser.add_argument("--profile", type=Path, default=None, help="cProfile each serve here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    n = args.grants
    work = Path(tempfile.mkdtemp(prefix="clearance-storm-"))
    slapd = Slapd(work / "slapd")
    results: dict[int, Outcome] = {}
    floors: list[Floor] = []
    keep = args.keep
    try:
        slapd.start()
        started = time.monotonic()
        seed_slapd(slapd, n)
        print(f"slapd: {n} people seeded in {time.monotonic() - started:.1f}s", flush=True)
        policy_path = work / "policy.yaml"
        policy_path.write_text(policy_text(slapd))
        floors.append(ldap_floor(slapd, n))
        print(f"  floor: {floors[-1].seconds:.2f}s", flush=True)
        for processes in args.processes:
            results[processes] = outcome = run_storm(args, slapd, policy_path, processes, work)
            keep = keep or bool(outcome.problems)
            took = outcome.last_revocation
            print(
                f"  {processes} process(es): "
                + (f"last revocation at +{took:.2f}s" if took else "; ".join(outcome.problems)),
                flush=True,
            )
        floors.append(ldap_floor(slapd, n))  # again: the machine is shared and noisy
        print(f"  floor: {floors[-1].seconds:.2f}s", flush=True)
    except BaseException:
        keep = True
        raise
    finally:
        slapd.stop()
        if keep:
            print(f"serve logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not report(args, results, floors):
        sys.exit(1)


if __name__ == "__main__":
    main()
