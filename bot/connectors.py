"""Entitlement connectors by name, built from the policy's ``connectors:`` section."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from engine.policy import ConnectorConfig, Policy
from engine.ports import Entitlements

# Every connector type this code base can run; `policy check` refuses any other.
SUPPORTED_CONNECTOR_TYPES = frozenset({"slack_usergroups"})

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
        connector = factory(name, config)
        self._built[name] = (config, connector)
        return connector
