"""A real OpenLDAP ``slapd`` on a loopback port, with a throwaway config and database.

Started by test fixtures and benchmarks; ``stop()`` / ``start()`` simulate an outage
while keeping the data (the mdb files stay in the work directory).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import ldap3

SUFFIX = "dc=example,dc=com"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
PLACEHOLDER = f"cn=placeholder,{SUFFIX}"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def slapd_binary() -> str:
    for candidate in ("/usr/sbin/slapd", shutil.which("slapd")):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("slapd is not installed: apt-get install slapd ldap-utils")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Slapd:
    """One slapd process serving ``dc=example,dc=com`` on 127.0.0.1."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        (workdir / "db").mkdir(parents=True, exist_ok=True)
        includes = "\n".join(f"include /etc/ldap/schema/{s}.schema" for s in SCHEMAS)
        (workdir / "slapd.conf").write_text(
            f"""{includes}
pidfile {workdir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 1073741824
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {workdir}/db
index objectClass eq
index mail eq
index member eq
"""
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [slapd_binary(), "-f", str(self.workdir / "slapd.conf"), "-h", self.url, "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"slapd exited: {err[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not start listening in 15 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def admin(self) -> ldap3.Connection:
        server = ldap3.Server(self.url, get_info=ldap3.NONE)
        return ldap3.Connection(server, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)

    def seed(self, people: list[dict[str, str]], groups: dict[str, list[str]]) -> None:
        """Create the tree: people (mail, name, optional manager mail / slack_id) and groups."""
        conn = self.admin()
        conn.add(SUFFIX, ["dcObject", "organization"], {"o": "Example", "dc": "example"})
        conn.add(PEOPLE, ["organizationalUnit"], {"ou": "people"})
        conn.add(GROUPS, ["organizationalUnit"], {"ou": "groups"})
        conn.add(PLACEHOLDER, ["organizationalRole"], {"cn": "placeholder"})
        by_mail = {p["mail"]: f"uid={p['mail'].split('@')[0]},{PEOPLE}" for p in people}
        for p in people:
            attrs = {
                "cn": p["name"],
                "sn": p["name"].split()[-1],
                "mail": p["mail"],
                "displayName": p["name"],
                "uid": p["mail"].split("@")[0],
            }
            if p.get("manager"):
                attrs["manager"] = by_mail[p["manager"]]
            if p.get("inactive"):
                attrs["employeeType"] = "inactive"
            if p.get("slack_id"):
                attrs["description"] = f"slack:{p['slack_id']}"
            ok = conn.add(by_mail[p["mail"]], ["inetOrgPerson"], attrs)
            assert ok, conn.result
        for name, members in groups.items():
            dns = [by_mail[m] for m in members] or [PLACEHOLDER]
            ok = conn.add(f"cn={name},{GROUPS}", ["groupOfNames"], {"cn": name, "member": dns})
            assert ok, conn.result
        conn.unbind()

    def members(self, group: str) -> set[str]:
        conn = self.admin()
        conn.search(f"cn={group},{GROUPS}", "(objectClass=*)", attributes=["member"])
        values = set(conn.entries[0].member.values) if conn.entries else set()
        conn.unbind()
        return {v for v in values if v != PLACEHOLDER}
