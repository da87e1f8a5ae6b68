"""``clearance db upgrade``: the schema brought to the latest migration."""

from __future__ import annotations

import argparse

from bot.subcommands.invocation import EXIT_OK, require_database, settings_from


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from storage import migrate

    settings = settings_from(args)
    require_database(settings, migrated=False)
    revision = migrate.upgrade(settings.database_url)
    print(f"Database is at revision {revision} (head {migrate.head_revision()}).")
    return EXIT_OK
