"""The policy in force: loaded from its file at start, replaced only by a file that validates."""

from __future__ import annotations

from pathlib import Path

from engine.policy import Policy
from engine.policy_checks import Checks
from engine.policy_loading import load_policy


class PolicySource:
    """Holds the current policy; ``reload`` swaps it only when the new file is valid.

    A broken file raises PolicyError with every problem and leaves the old policy in force.
    """

    def __init__(self, path: Path, checks: Checks | None = None) -> None:
        self.path = path
        self.checks = checks
        self._policy: Policy | None = None

    @property
    def current(self) -> Policy:
        if self._policy is None:
            self._policy = load_policy(self.path, self.checks)
        return self._policy

    def reload(self) -> tuple[Policy, Policy | None]:
        """Load the file again; returns (new, previous). Raises PolicyError, keeping the old."""
        previous = self._policy
        fresh = load_policy(self.path, self.checks)
        self._policy = fresh
        return fresh, previous

    @classmethod
    def fixed(cls, policy: Policy) -> PolicySource:
        """A source that always returns ``policy`` (CLI checks, tests)."""
        source = cls(Path(policy.source))
        source._policy = policy
        return source
