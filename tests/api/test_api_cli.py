"""The command line of the API: people's tokens (made once, kept hashed, revoked), and
``clearance request --wait`` end to end against a running Clearance."""

from __future__ import annotations

import asyncio
import hashlib

from sqlalchemy import select

from storage.tables import ApiTokenRow
from tests.api.conftest import ApiWorld
from tests.conftest import Ran, Run


def _env(api: ApiWorld) -> dict[str, str]:
    settings = api.components.settings
    return {
        "DATABASE_URL": settings.database_url,
        "CLEARANCE_POLICY": str(settings.clearance_policy),
        "CLEARANCE_URL": api.url("/").rstrip("/"),
    }


async def _while_running(
    api: ApiWorld, run: asyncio.Future[Ran], approve: tuple[str, ...] = ()
) -> Ran:
    """Play the people and the dispatcher while a CLI run blocks, until it ends."""
    pending = list(approve)
    for _ in range(300):
        if run.done():
            break
        await api.settle()
        if pending and any("approve" in str(m) for m in api.fake.dms_to(pending[0])):
            await api.approve(pending.pop(0))
        await asyncio.sleep(0.1)
    return await asyncio.wait_for(run, 30)


async def test_a_person_makes_a_token_once_and_asks_from_the_command_line(
    api: ApiWorld, run_cli: Run
) -> None:
    env = _env(api)
    made = await asyncio.to_thread(
        run_cli, "token", "create", "--user", "bob@example.com", "--ttl", "7d", env=env
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("clr_")
    assert "shown only now" in made.stderr
    # Only the hash is stored.
    async with api.components.database.transaction() as session:
        [row] = (await session.execute(select(ApiTokenRow))).scalars().all()
    assert row.owner == "bob@example.com"
    assert row.secret_hash == hashlib.sha256(token.split("_", 2)[2].encode()).hexdigest()
    assert token not in str(row.model_dump())

    # staging-deploy is approved at once; --wait returns once the grant is in force.
    run = asyncio.ensure_future(
        asyncio.to_thread(
            run_cli,
            "request",
            "staging-deploy",
            "--duration",
            "1h",
            "--justification",
            "checking the staging rollout",
            "--wait",
            "--timeout",
            "1m",
            env={**env, "CLEARANCE_TOKEN": token},
        )
    )
    ran = await _while_running(api, run)
    assert ran.returncode == 0, ran.stderr
    assert "active" in ran.stdout.splitlines()[-1]
    assert any("uid=bob" in m for m in api.slapd.members("staging-deploy"))

    listed = await asyncio.to_thread(run_cli, "token", "list", env=env)
    assert row.id in listed.stdout and "last used" in listed.stdout
    revoked = await asyncio.to_thread(run_cli, "token", "revoke", row.id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    status, problem, _ = await api.call("GET", "/api/v1/requests/R-ANY", token)
    assert status == 401 and problem["code"] == "token_revoked"


async def test_a_pipeline_step_blocks_until_its_access_is_approved(
    api: ApiWorld, run_cli: Run
) -> None:
    run = asyncio.ensure_future(
        asyncio.to_thread(
            run_cli,
            "request",
            "prod-deploy-role",
            "--justification",
            "deploying release 42 to production",
            "--wait",
            env={**_env(api), "CLEARANCE_TOKEN": api.token()},
        )
    )
    ran = await _while_running(api, run, approve=("U0BOB", "U0DORA"))
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert "pending" in lines[0] and "asking bob@example.com" in lines[0]
    assert "active" in lines[-1]
    assert any("uid=svc-deploy" in m for m in api.slapd.members("prod-deploy"))


async def test_the_cli_says_what_is_missing_and_what_the_api_refused(
    api: ApiWorld, run_cli: Run
) -> None:
    env = _env(api)
    unset = await asyncio.to_thread(
        run_cli, "request", "x", "--justification", "y", env={**env, "CLEARANCE_TOKEN": ""}
    )
    assert unset.returncode == 2 and "CLEARANCE_TOKEN not set" in unset.stderr
    refused = await asyncio.to_thread(
        run_cli,
        "request",
        "staging-deploy",
        "--justification",
        "a workload may not ask for this",
        env={**env, "CLEARANCE_TOKEN": api.token()},
    )
    assert refused.returncode == 2
    assert "may not ask for staging-deploy" in refused.stderr and "HTTP 403" in refused.stderr
    nobody = await asyncio.to_thread(
        run_cli, "token", "create", "--user", "nobody@example.com", env=env
    )
    assert nobody.returncode == 1 and "not an active person" in nobody.stderr
