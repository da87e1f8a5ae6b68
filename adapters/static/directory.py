"""Directory port over the policy file's ``directory:`` section (small teams, demos, tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.directory import Person, snapshot_from_policy
from engine.policy import Policy


class StaticDirectory:
    """Reads the current policy on every call, so a ``reload`` changes who is who at once."""

    def __init__(self, policy: Callable[[], Policy]) -> None:
        self._policy = policy

    async def person(self, email: str) -> Person | None:
        return snapshot_from_policy(self._policy()).person(email)

    async def person_by_chat_id(self, platform: str, chat_id: str) -> Person | None:
        attr = {"slack": "slack_id", "teams": "teams_id"}.get(platform)
        if attr is None:
            return None
        for person in snapshot_from_policy(self._policy()).people.values():
            if getattr(person, attr) == chat_id:
                return person
        return None

    async def group_members(self, group: str) -> Sequence[str] | None:
        return snapshot_from_policy(self._policy()).members(group)
