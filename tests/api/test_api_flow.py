"""A pipeline asks for access through the API: humans approve in Slack, the grant lands on
the workload's own account in slapd, and the pipeline's wait returns active."""

from __future__ import annotations

import asyncio
import json

from bot.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from storage.audit_log import AuditLog
from tests.api.conftest import CALLBACK_SECRET, SUBJECT, ApiWorld

BODY = {
    "resource": "prod-deploy-role",
    "duration": "30m",
    "justification": "deploying release 42 to production",
}


async def test_a_workload_request_is_approved_in_slack_and_granted_to_its_account(
    api: ApiWorld,
) -> None:
    status, made, headers = await api.call("POST", "/api/v1/requests", api.token(), BODY)
    assert status == 201, made
    assert made["status"] == "pending"
    assert made["requester"] == "workload:deploy-pipeline"
    assert made["principal"] == "svc-deploy@example.com"
    # The workload's "manager" is its owner: Bob is asked first.
    assert made["approvers_of_current_stage"] == ["bob@example.com"]
    assert headers["Location"] == f"/api/v1/requests/{made['id']}"

    # The pipeline blocks on approval while people decide in Slack.
    token = api.token()
    waiting = asyncio.create_task(
        api.call("GET", f"/api/v1/requests/{made['id']}/wait?timeout=30", token)
    )
    await api.settle()
    card = api.fake.dms_to("U0BOB")[-1]
    text = json.dumps(card)
    # The card says plainly that a workload asks, which one, from where, and who owns it.
    assert "A workload asks, not a person" in text
    assert "deploy-pipeline" in text and SUBJECT in text and "owned by <@U0BOB>" in text
    assert "svc-deploy@example.com" in text
    await api.approve("U0BOB")
    await api.approve("U0DORA")
    await api.settle()
    await api.settle()

    status, view, _ = await asyncio.wait_for(waiting, 30)
    assert status == 200
    assert view["status"] == "active"
    assert [d["approver"] for d in view["decisions"]] == ["bob@example.com", "dora@example.com"]
    assert view["expires_at"] is not None
    assert any("uid=svc-deploy" in m for m in api.slapd.members("prod-deploy"))

    # The owner is told of the decisions (a workload reads no DMs).
    assert any(made["id"] in json.dumps(m) for m in api.fake.dms_to("U0BOB")[1:])

    # The callbacks carried every state change, signed with the shared secret.
    events = api.receiver.events()
    assert events[0] == "pending" and events[-1] == "active", events
    for sent, body in api.receiver.posts:
        expected = signature(CALLBACK_SECRET.encode(), sent[TIMESTAMP_HEADER], body)
        assert sent[SIGNATURE_HEADER] == expected

    # Every API call is audited with the token's issuer, subject and jti; never the token.
    events_ = [e async for e in AuditLog(api.components.database).events()]
    calls = [e for e in events_ if e.action == "api_call"]
    assert {c.details["call"] for c in calls} >= {
        "POST /api/v1/requests",
        "GET /api/v1/requests/{id}/wait",
    }
    assert all(
        c.details["issuer"] == api.issuer.url and c.details["subject"] == SUBJECT for c in calls
    )
    assert all(c.details["jti"] for c in calls)
    assert not any(token in json.dumps(e.details) for e in events_)
    requested = next(e for e in events_ if e.action == "requested" and e.request_id == made["id"])
    assert requested.details["origin"]["workload"] == "deploy-pipeline"


async def test_a_workload_cancels_and_reads_its_own_requests_only(api: ApiWorld) -> None:
    status, made, _ = await api.call("POST", "/api/v1/requests", api.token(), BODY)
    assert status == 201
    status, view, _ = await api.call("GET", f"/api/v1/requests/{made['id']}", api.token())
    assert status == 200 and view["id"] == made["id"]
    # Nobody else sees it: a person's token of someone not involved gets "not found".
    status, problem, _ = await api.call("GET", "/api/v1/requests/R-NOTTHERE", api.token())
    assert status == 404 and problem["code"] == "unknown_request"
    status, view, _ = await api.call("POST", f"/api/v1/requests/{made['id']}/cancel", api.token())
    assert status == 200 and view["status"] == "cancelled"
    status, problem, _ = await api.call(
        "POST", f"/api/v1/requests/{made['id']}/cancel", api.token()
    )
    assert status == 409 and problem["code"] == "not_cancellable"


async def test_a_person_asks_for_a_service_account_only_where_the_policy_says(
    api: ApiWorld,
) -> None:
    from datetime import timedelta

    from bot.api_auth import new_personal_token

    tokens = {}
    for who in ("bob@example.com", "alice@example.com"):
        stored, secret = new_personal_token(
            who, timedelta(days=1), "sam@example.com", api.clock.now()
        )
        await api.components.api_tokens.add(stored)
        tokens[who] = secret
    on_behalf = {**BODY, "principal": "svc-deploy@example.com"}
    # Alice is a platform engineer but does not own the pipeline: not for its account.
    status, problem, _ = await api.call(
        "POST", "/api/v1/requests", tokens["alice@example.com"], on_behalf
    )
    assert status == 403 and problem["code"] == "principal_not_allowed"
    assert "svc-deploy@example.com" in problem["detail"]
    # Bob owns the workload: he may ask for its account, and his manager is asked.
    status, made, _ = await api.call(
        "POST", "/api/v1/requests", tokens["bob@example.com"], on_behalf
    )
    assert status == 201, made
    assert made["requester"] == "bob@example.com" and made["principal"] == "svc-deploy@example.com"
    assert made["approvers_of_current_stage"] == ["carol@example.com"]
    await api.settle()
    card = json.dumps(api.fake.dms_to("U0CAROL")[-1])
    # The card shows both names: who asks, and whose account gets the access.
    assert "<@U0BOB>" in card and "*Access for*\\nsvc-deploy@example.com" in card
    assert "A workload asks" not in card
