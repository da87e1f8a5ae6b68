"""Adapters to the outside world: chat platforms, directories and entitlement connectors."""
