"""A real SCIM 2.0 server (the ``scim2-server`` package) on a loopback port, seeded over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.fakes.slapd import free_port

TOKEN = "scim-test-token"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


class ScimServer:
    """One scim2-server process; ``stop()`` loses its in-memory data (it is a test server)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v2"
        self.process: subprocess.Popen[bytes] | None = None
        self.ids: dict[str, str] = {}  # email or group name -> id

    def start(self) -> None:
        binary = Path(sys.executable).with_name("scim2-server")
        self.process = subprocess.Popen(
            [
                str(binary),
                "--hostname",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--bearer-token",
                TOKEN,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("scim2-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def add_user(
        self, email: str, name: str, manager: str | None = None, active: bool = True
    ) -> str:
        body: dict[str, Any] = {
            "schemas": [USER] + ([ENTERPRISE] if manager else []),
            "userName": email,
            "displayName": name,
            "active": active,
            "emails": [{"value": email, "primary": True}],
        }
        if manager:
            body[ENTERPRISE] = {"manager": {"value": self.ids[manager]}}
        self.ids[email] = self.call("POST", "/Users", body)["id"]
        return self.ids[email]

    def add_group(self, name: str, members: list[str]) -> str:
        body = {
            "schemas": [GROUP],
            "displayName": name,
            "members": [{"value": self.ids[m]} for m in members],
        }
        self.ids[name] = self.call("POST", "/Groups", body)["id"]
        return self.ids[name]

    def member_ids(self, group: str) -> set[str]:
        return {
            m["value"] for m in self.call("GET", f"/Groups/{self.ids[group]}").get("members") or []
        }
