"""The OpenAPI document is the API's contract: it is a valid OpenAPI 3.1 document, the one
served is the one shipped, it names exactly the routes the server has, and what the server
answers (successes and refusals) is what it declares, status and body."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from bot.api_auth import new_personal_token
from tests.api.conftest import ApiWorld

DOCUMENT = Path(__file__).resolve().parents[2] / "adapters" / "api" / "openapi.json"
BODY = {
    "resource": "prod-deploy-role",
    "duration": "30m",
    "justification": "deploying release 42 to production",
}


def _document() -> dict[str, Any]:
    return json.loads(DOCUMENT.read_text())  # type: ignore[no-any-return]


def test_the_document_is_valid_openapi_3_1() -> None:
    document = _document()
    assert document["openapi"].startswith("3.1")
    validate_openapi(document)


class Contract:
    """Checks an answer against what the document declares for its operation."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.seen: set[tuple[str, str, int]] = set()

    def check(
        self, method: str, path: str, status: int, body: Any, headers: dict[str, str]
    ) -> None:
        operation = self.document["paths"][path][method.lower()]
        declared = operation["responses"]
        assert str(status) in declared, f"{method} {path} answered {status}, not declared"
        response = declared[str(status)]
        if "$ref" in response:
            response = self._resolve(response["$ref"])
        [(media, content)] = response["content"].items()
        assert headers["Content-Type"].split(";")[0] == media, (method, path, status)
        schema = {**content["schema"], "components": self.document["components"]}
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(body), key=str)
        assert not errors, (
            f"{method} {path} {status}: {errors[0].message} at {list(errors[0].path)}"
        )
        self.seen.add((method, path, status))

    def _resolve(self, ref: str) -> dict[str, Any]:
        node: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node  # type: ignore[no-any-return]


async def test_the_served_document_is_the_shipped_one_and_names_every_route(
    api: ApiWorld,
) -> None:
    status, served, headers = await api.call("GET", "/api/v1/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert served == _document()
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in api.server.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
        and route.method != "HEAD"
    }
    declared = {
        (method, path)
        for path, ops in served["paths"].items()
        for method in ops
        if method != "parameters"
    }
    assert routes == declared


async def test_what_the_server_answers_is_what_the_document_declares(api: ApiWorld) -> None:
    contract = Contract(_document())
    post, one, wait, cancel = (
        "/api/v1/requests",
        "/api/v1/requests/{id}",
        "/api/v1/requests/{id}/wait",
        "/api/v1/requests/{id}/cancel",
    )

    async def call(method: str, template: str, path: str, token: str | None, **kw: Any) -> Any:
        status, body, headers = await api.call(method, path, token, **kw)
        contract.check(method, template, status, body, headers)
        return body

    # A workload's request, pending at its first stage, read, waited on, cancelled.
    made = await call("POST", post, post, api.token(), body=BODY)
    assert made["status"] == "pending" and made["stage"] is not None
    path = f"/api/v1/requests/{made['id']}"
    await call("GET", one, path, api.token())
    await call("GET", wait, f"{path}/wait?timeout=0", api.token())
    assert (await call("POST", cancel, f"{path}/cancel", api.token()))["status"] == "cancelled"
    await call("POST", cancel, f"{path}/cancel", api.token())  # 409: it ended
    await call("GET", one, "/api/v1/requests/R-NOPE", api.token())  # 404
    await call("GET", wait, f"{path}/wait?timeout=soon", api.token())  # 422

    # A person's auto-approved request: active, granted, with an expiry.
    stored, secret = new_personal_token(
        "alice@example.com", timedelta(days=1), "sam@example.com", api.clock.now()
    )
    await api.components.api_tokens.add(stored)
    auto = {"resource": "staging-deploy", "justification": "checking the staging deploy"}
    made = await call("POST", post, post, secret, body=auto)
    waiting = asyncio.create_task(
        api.call("GET", f"/api/v1/requests/{made['id']}/wait?timeout=20", secret)
    )
    await api.settle()  # the grant is made on slapd
    status, active, headers = await asyncio.wait_for(waiting, 30)
    contract.check("GET", wait, status, active, headers)
    assert active["status"] == "active" and active["expires_at"] and active["granted_at"]

    # Refusals of each kind, on the route that files.
    await call("POST", post, post, None, body=BODY)  # 401
    await call("POST", post, post, api.token(), body={**BODY, "resource": "staging-deploy"})  # 403
    await call(
        "POST", post, post, api.token(), raw=b"[", headers={"Content-Type": "application/json"}
    )
    await call("POST", post, post, api.token(), raw=b"x", headers={"Content-Type": "text/plain"})
    await call("POST", post, post, api.token(), body={**BODY, "justification": "x" * 20_000})
    await call("POST", post, post, api.token(), body={**BODY, "duration": "9h"})  # 422
    statuses = {status for method, route, status in contract.seen if route == post}
    assert statuses == {201, 400, 401, 403, 413, 415, 422}
