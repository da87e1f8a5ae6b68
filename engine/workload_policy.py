"""The ``workloads:`` section of a policy: pipelines, service accounts and agents that ask
for access themselves through the API, proving what they are with their platform's token.

workloads:
  - id: deploy-pipeline
    issuer: https://token.actions.githubusercontent.com   # the token's iss, exactly
    audience: clearance                                    # the token's aud
    subject: "repo:acme/payments:ref:refs/heads/main"      # the token's sub: exact or a glob
    claims: {repository_owner: acme}                       # more claims, exact or globs
    owner: bob@example.com     # the accountable human: asked as its "manager", told of all
    principal: svc-deploy@example.com   # the account the access lands on
    resources: [prod-deploy-role]       # what it may ask for
    callback_url: https://ci.example.com/clearance-hook   # optional; host in api.callback_hosts
    rate_limit: 30/1m          # API calls per window (default 30 a minute)

A workload asks as ``workload:<id>``: that is its identity in requests and the audit trail;
it never approves anything (no chat identity maps to it), and the policy check keeps its
principal, its owner and the connector identities apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from engine.durations import count_per_window, format_duration
from engine.policy_fields import StrictModel
from engine.rules import is_email

WORKLOAD_PREFIX = "workload:"
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_workload(identity: str) -> bool:
    """Whether a requester identity is a workload's (``workload:<id>``), not a person's."""
    return identity.startswith(WORKLOAD_PREFIX)


def workload_id(identity: str) -> str:
    return identity.removeprefix(WORKLOAD_PREFIX)


def secure_url(url: str) -> bool:
    """https, or plain http to this machine only (a local issuer or receiver in tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS


class RateLimit(StrictModel):
    """At most ``count`` API calls per ``window``, written ``30/1m``."""

    count: int
    window: timedelta

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: object) -> object:
        count, window = count_per_window(data, "a rate limit", "30/1m (30 a minute)")
        if count < 1:
            raise ValueError(f"'{data}' allows no call at all; the count must be 1 or more")
        return {"count": count, "window": window}

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.window)}"


class WorkloadPolicy(StrictModel):
    """One workload: how its token is recognised, whom it acts for and who answers for it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    issuer: str
    audience: str = "clearance"
    subject: str = Field(min_length=1)
    claims: dict[str, str] = Field(default_factory=dict)
    owner: str
    principal: str
    resources: tuple[str, ...] = Field(min_length=1)
    callback_url: str | None = None
    rate_limit: RateLimit = RateLimit.model_validate("30/1m")

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        if not secure_url(v):
            raise ValueError(
                f"issuer '{v}' must be an https URL (the token's iss, e.g. "
                "https://token.actions.githubusercontent.com)"
            )
        return v

    @field_validator("owner", "principal")
    @classmethod
    def _email(cls, v: str) -> str:
        if not is_email(v):
            raise ValueError(f"'{v}' is not an email address")
        return v.lower()

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, v: str | None) -> str | None:
        if v is not None and not secure_url(v):
            raise ValueError(f"callback_url '{v}' must be an https URL")
        return v

    @property
    def identity(self) -> str:
        """How the workload appears as a requester and in the audit trail."""
        return WORKLOAD_PREFIX + self.id

    def mismatch(self, subject: str, claims: Mapping[str, object]) -> str | None:
        """Why a verified token's claims do not describe this workload, or None when they
        do: ``sub`` and every listed claim must match, exactly or as a glob."""
        if not fnmatchcase(subject, self.subject):
            return f"sub '{subject[:100]}' does not match '{self.subject}'"
        for name, pattern in self.claims.items():
            value = claims.get(name)
            if not isinstance(value, str | int | bool) or not fnmatchcase(str(value), pattern):
                shown = "missing" if value is None else f"'{str(value)[:100]}'"
                return f"claim {name} is {shown}, not '{pattern}'"
        return None


class ApiConfig(StrictModel):
    """Settings of the HTTP API that belong with the policy."""

    # Hosts a workload's callback_url may point at: callbacks carry request states out.
    callback_hosts: tuple[str, ...] = ()

    @field_validator("callback_hosts")
    @classmethod
    def _lower(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(h.lower() for h in v)
