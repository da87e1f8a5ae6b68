"""What the expiry storm prints: each storm side by side with the floor, and the verdicts."""

from __future__ import annotations

import argparse

from bench.expiry_storm_floor import Floor
from bench.expiry_storm_run import Outcome


def report(args: argparse.Namespace, results: dict[int, Outcome], floors: list[Floor]) -> bool:
    """Print the figures side by side with the floor; False when a storm went wrong."""
    n = args.grants
    best = min(floors, key=lambda f: f.seconds)
    floor = best.seconds
    print()
    print(
        f"expiry storm: {n} grants expiring at one instant, LDAP connector on slapd, "
        f"PostgreSQL, CLEARANCE_TICK_SECONDS={args.tick}"
    )
    print(
        f"{'config':<24}{'seconds':>9}{'revocations/s':>15}{'ratio':>9}"
        f"{'CPU ms/grant: ours':>20}{'slapd':>7}{'machine busy':>14}"
    )

    def cpu_columns(ours: float, slapd: float, busy: float) -> str:
        return f"{ours * 1000 / n:>20.2f}{slapd * 1000 / n:>7.2f}{busy:>13.0%}"

    print(
        f"{'ldap3 loop (floor)':<24}{floor:>9.2f}{n / floor:>15.0f}{1:>8.2f}x"
        + cpu_columns(best.cpu.used["client"], best.cpu.used["slapd"], best.cpu.machine_busy)
        + f"   (runs: {', '.join(f'{f.seconds:.2f}s' for f in floors)}; best is the floor)"
    )
    ok = True
    for processes, outcome in results.items():
        label = f"clearance serve x{processes}"
        if outcome.last_revocation is None or outcome.problems:
            ok = False
            print(f"{label:<24}  FAILED: {'; '.join(outcome.problems)}")
            continue
        seconds = outcome.last_revocation
        cpu = outcome.cpu
        print(
            f"{label:<24}{seconds:>9.2f}{n / seconds:>15.0f}{seconds / floor:>8.2f}x"
            + cpu_columns(cpu.used["serve"], cpu.used["slapd"], cpu.machine_busy)
            + f"   (last expiry transition at +{outcome.last_expiry or 0:.2f}s;"
            f" backends active {outcome.backends[0]:.1f}, waiting on a lock"
            f" {outcome.backends[1]:.1f}; {outcome.warnings} warning lines logged)"
        )
    print(
        "ratio = seconds / floor seconds. CPU ms/grant: 'ours' is the ldap3 loop itself for"
        " the floor, all clearance serve processes for the storms. machine busy: all cores,"
        " anyone's work."
    )
    one, two = results.get(1), results.get(2)
    if one and two and one.last_revocation and two.last_revocation:
        speedup = one.last_revocation / two.last_revocation
        verdict = "scaled" if speedup > 1.05 else "did not scale"
        print(f"second process: {verdict}, {speedup:.2f}x the throughput of one")
    timed = [o.last_revocation for o in results.values() if o.last_revocation and not o.problems]
    if timed:
        best_ratio = min(timed) / floor
        verdict = "met" if best_ratio <= 1.5 else "NOT met"
        print(f"target (within 1.5x the direct floor): {verdict}, best {best_ratio:.2f}x")
    return ok
