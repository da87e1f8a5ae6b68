"""Entitlement connectors by name, built from the policy's ``connectors:`` section."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from adapters.ldap.connection import LdapSettings
from adapters.scim.client import ScimSettings
from engine.policy import ConnectorConfig, DirectoryConfig, Policy
from engine.policy_checks import Checks
from engine.ports import ConnectorError, Entitlements

# Every connector type this code base can run; `policy check` refuses any other.
SUPPORTED_CONNECTOR_TYPES = frozenset({"slack_usergroups", "ldap", "scim"})


def check_connector(name: str, config: ConnectorConfig) -> str | None:
    """What is wrong with a connector's settings, for ``policy check`` (None when fine)."""
    where = f"connector '{name}' ({config.type})"
    try:
        if config.type == "ldap":
            LdapSettings.from_options(where, config.options)
        elif config.type == "scim":
            ScimSettings.from_options(where, config.options)
        elif config.type == "slack_usergroups" and config.options:
            return f"{where} takes no settings besides identity; it uses SLACK_BOT_TOKEN"
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def check_directory(config: DirectoryConfig) -> str | None:
    """What is wrong with a non-static directory's settings (None when fine)."""
    where = f"directory ({config.type})"
    try:
        if config.type == "ldap":
            LdapSettings.from_options(where, config.options)
        elif config.type == "scim":
            ScimSettings.from_options(where, config.options)
        elif config.options:
            extra = ", ".join(config.options)
            return f"the static directory takes only people and groups, not {extra}"
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


POLICY_CHECKS = Checks(SUPPORTED_CONNECTOR_TYPES, check_connector, check_directory)

ConnectorFactory = Callable[[str, ConnectorConfig], Entitlements]
# Told of every connector call: connector name, operation, outcome, seconds (metrics).
ConnectorObserver = Callable[[str, str, str, float], None]
T = TypeVar("T")


class UnknownConnector(LookupError):
    """The policy names a connector this deployment cannot build."""


class Connectors:
    """Builds each connector once per configuration; a reloaded policy rebuilds changed ones."""

    def __init__(
        self,
        factories: Mapping[str, ConnectorFactory],
        policy: Callable[[], Policy],
        observe: ConnectorObserver | None = None,
    ):
        self.factories = dict(factories)
        self._policy = policy
        self._observe = observe
        self._built: dict[str, tuple[ConnectorConfig, Entitlements]] = {}

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self.factories)

    def get(self, name: str) -> Entitlements:
        config = self._policy().document.connectors.get(name)
        if config is None:
            raise UnknownConnector(f"connector '{name}' is not in the policy any more")
        cached = self._built.get(name)
        if cached is not None and cached[0] == config:
            return cached[1]
        factory = self.factories.get(config.type)
        if factory is None:
            raise UnknownConnector(
                f"connector '{name}' has type '{config.type}', which this deployment cannot run"
            )
        try:
            connector = factory(name, config)
        except ValueError as exc:  # settings the adapter refuses: no retry can help
            raise UnknownConnector(str(exc)) from None
        if self._observe is not None:
            connector = MeteredEntitlements(name, connector, self._observe)
        self._built[name] = (config, connector)
        return connector


class MeteredEntitlements:
    """A connector whose every call is counted and timed (``observe``), failures too."""

    def __init__(self, name: str, inner: Entitlements, observe: ConnectorObserver) -> None:
        self.name = name
        self.inner = inner
        self.observe = observe

    async def grant(self, principal: str, group: str) -> None:
        await self._timed("grant", self.inner.grant(principal, group))

    async def revoke(self, principal: str, group: str) -> None:
        await self._timed("revoke", self.inner.revoke(principal, group))

    async def is_granted(self, principal: str, group: str) -> bool:
        return await self._timed("is_granted", self.inner.is_granted(principal, group))

    async def members(self, group: str) -> Sequence[str]:
        return await self._timed("members", self.inner.members(group))

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        start = time.monotonic()
        outcome = "ok"
        try:
            return await call
        except BaseException as exc:
            outcome = _outcome(exc)
            raise
        finally:
            self.observe(self.name, operation, outcome, time.monotonic() - start)


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, ConnectorError):
        return exc.failure.value
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, asyncio.CancelledError):  # the dispatcher's time limit ran out
        return "cancelled"
    return "error"
