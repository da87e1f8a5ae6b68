"""Entitlement connectors by name, built from the policy's ``connectors:`` section."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from adapters.ldap.connection import LdapSettings
from adapters.scim.client import ScimSettings
from engine.policy import ConnectorConfig, DirectoryConfig, Policy
from engine.policy_checks import Checks
from engine.ports import Entitlements

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


class UnknownConnector(LookupError):
    """The policy names a connector this deployment cannot build."""


class Connectors:
    """Builds each connector once per configuration; a reloaded policy rebuilds changed ones."""

    def __init__(self, factories: Mapping[str, ConnectorFactory], policy: Callable[[], Policy]):
        self.factories = dict(factories)
        self._policy = policy
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
        self._built[name] = (config, connector)
        return connector
