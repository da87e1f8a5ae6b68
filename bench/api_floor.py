"""The floor: a bare aiohttp app that verifies the bearer JWT the way Clearance does (PyJWT
``jwt.decode``, the same RS256 key, iss, aud, exp and sub required and checked) and answers
JSON, 201 for a POST and 200 for a GET; nothing is stored. In its own process.

Run as ``python -m bench.api_floor JWKS_FILE ISSUER`` (from the repository root, with
``PORT`` set); ``FLOOR_ARGV`` is that command for ``bench.harness.Server``. The key is read
from the issuer's JWKS (saved to ``JWKS_FILE`` by the benchmark) once, at start.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

FLOOR_ARGV = ("-m", "bench.api_floor")


def serve_floor(port: int, jwks_file: Path, issuer: str) -> None:
    import jwt
    from aiohttp import web

    from bench.api_world import AUDIENCE, SUBJECT, WORKLOAD

    jwks = json.loads(jwks_file.read_text())
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["alg"] == "RS256"), algorithm="RS256")

    def verified(request: web.Request) -> dict[str, object] | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            claims: dict[str, object] = jwt.decode(
                token.strip(),
                key,
                algorithms=["RS256"],
                audience=[AUDIENCE],
                issuer=issuer,
                leeway=30,
                options={
                    "require": ["iss", "sub", "aud", "exp"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError:
            return None
        return claims if claims.get("sub") == SUBJECT else None

    def refused() -> web.Response:
        return web.json_response({"title": "unauthorized"}, status=401)

    async def create(request: web.Request) -> web.Response:
        if verified(request) is None:
            return refused()
        body = await request.json()
        view = {
            "id": f"R-{uuid.uuid4().hex[:10]}",
            "status": "pending",
            "resource": body["resource"],
            "requester": f"workload:{WORKLOAD}",
            "justification": body["justification"],
        }
        return web.json_response(view, status=201)

    async def show(request: web.Request) -> web.Response:
        if verified(request) is None:
            return refused()
        return web.json_response({"id": request.match_info["id"], "status": "pending"})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/api/v1/requests", create)
    app.router.add_get("/api/v1/requests/{id}", show)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    serve_floor(int(os.environ["PORT"]), Path(sys.argv[1]), sys.argv[2])
