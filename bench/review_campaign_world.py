"""The review benchmark's world: R reviewers, each owning one resource whose Slack user group
holds N/R people, in the local fake Slack Web API, and the policy that reviews them all."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.slack_api import FakeSlack

ADMIN = "admin@example.com"
REVIEW_ID = "bench"


def reviewer(r: int) -> str:
    return f"rev{r:02d}@example.com"


def holder(i: int) -> str:
    return f"h{i:05d}@example.com"


def group(r: int) -> str:
    return f"S0GRP{r:02d}"


def holder_slack_id(i: int) -> str:
    return f"UH{i:05d}"


def seed_slack(fake: FakeSlack, items: int, reviewers: int) -> dict[int, list[int]]:
    """Every holder and reviewer as a Slack user, each group filled; the holders of each
    group (reviewer index -> holder indexes)."""
    fake.add_user("UADMIN", ADMIN, "Admin")
    for r in range(reviewers):
        fake.add_user(f"UREV{r:02d}", reviewer(r), f"Reviewer {r}")
    per_group: dict[int, list[int]] = {r: [] for r in range(reviewers)}
    for i in range(items):
        fake.add_user(holder_slack_id(i), holder(i), f"Holder {i}")
        per_group[i % reviewers].append(i)
    for r, members in per_group.items():
        fake.add_usergroup(group(r), [holder_slack_id(i) for i in members])
    return per_group


def policy_text(reviewers: int) -> str:
    """Only the reviewers and the admin are in the (static) directory: the holders are
    Slack users the connector names by their Slack profile's email, as in a workspace
    whose directory is elsewhere."""
    people = "\n".join(
        f"    - {{email: {reviewer(r)}, name: Reviewer {r}, slack_id: UREV{r:02d}}}"
        for r in range(reviewers)
    )
    resources = "\n".join(
        f"""  - id: res-{r:02d}
    name: Resource {r}
    risk: medium
    owners: [{reviewer(r)}]
    grant: {{connector: slack-groups, group: {group(r)}}}
    duration: {{default: 1h, max: 4h}}
    approval: [resource_owner]"""
        for r in range(reviewers)
    )
    return f"""admins: {{channel: C0ADMINS, users: [{ADMIN}]}}
directory:
  people:
    - {{email: {ADMIN}, name: Admin, slack_id: UADMIN}}
{people}
connectors:
  slack-groups: {{type: slack_usergroups, identity: clearance-bot@example.com}}
resources:
{resources}
reviews:
  - id: {REVIEW_ID}
    reviewer: resource_owner
    due: 7d
    scope: [members]
"""


def write_policy(path: Path, reviewers: int) -> Path:
    path.write_text(policy_text(reviewers))
    return path
