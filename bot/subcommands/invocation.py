"""What every subcommand gets from how it was invoked: the exit statuses, the settings and
a database known to be usable."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.config_errors import ConfigurationError, database_error
from bot.settings import Settings, load_settings

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
# A database that does not answer within this is reported instead of waited for.
CONNECT_TIMEOUT_SECONDS = 10


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings from the environment, with the command line's --database-url / --policy.

    Raises ConfigurationError (one line per bad setting) for values that cannot work."""
    overrides: dict[str, object] = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "policy", None):
        overrides["clearance_policy"] = Path(args.policy)
    if getattr(args, "host", None):
        overrides["host"] = args.host
    return load_settings(**overrides)


def require_database(settings: Settings, migrated: bool = True) -> None:
    """Connect once, so that a database that cannot be used is one line, not a traceback.

    With ``migrated``, a database without Clearance's schema is refused too (the command
    would only fail on its first query); ``db upgrade`` and ``serve`` create the schema.
    """
    from storage import migrate

    try:
        revision = migrate.current_revision(
            settings.database_url, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )
    except Exception as exc:  # the driver's many ways to fail become one readable line
        raise database_error(exc, settings.database_url) from exc
    if migrated and revision is None:
        raise ConfigurationError(
            "DATABASE_URL: the database has no Clearance schema yet; run `clearance db upgrade` "
            "(clearance serve does it at start)"
        )
