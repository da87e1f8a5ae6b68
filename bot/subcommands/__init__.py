"""What each ``clearance`` subcommand does; ``bot.cli`` parses the command line and picks one.

Every command takes the parsed arguments and returns its exit status. Commands import what
they need when they run: ``policy check`` in CI should not pay for loading Slack, the
database drivers and Alembic.
"""
