"""The expiry storm's floor: the same N member removals done straight with ldap3."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import ldap3

from bench.expiry_storm_world import GROUP, GROUP_DN, fill_group, user_dn
from bench.harness import CpuWindow
from tests.fakes.slapd import Slapd


@dataclass
class Floor:
    seconds: float
    cpu: CpuWindow


def ldap_floor(slapd: Slapd, n: int) -> Floor:
    """N MODIFY_DELETEs of members in one loop on one connection: seconds and CPU used."""
    fill_group(slapd, n)
    conn = slapd.admin()
    assert slapd.process is not None
    cpu = CpuWindow({"client": [os.getpid()], "slapd": [slapd.process.pid]})
    try:
        cpu.start()
        started = time.perf_counter()
        for i in range(n):
            if not conn.modify(GROUP_DN, {"member": [(ldap3.MODIFY_DELETE, [user_dn(i)])]}):
                raise RuntimeError(f"removing {user_dn(i)}: {conn.result}")
        elapsed = time.perf_counter() - started
        cpu.stop()
    finally:
        conn.unbind()
    if slapd.members(GROUP):
        raise RuntimeError("the floor loop left members in the group")
    return Floor(elapsed, cpu)
