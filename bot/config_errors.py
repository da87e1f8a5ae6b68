"""Configuration that cannot work, told in one line: the setting, what is wrong, the fix.

An operator who set ``PORT=abc`` or pointed ``DATABASE_URL`` at a database that does not
exist needs to know which setting to change, not to read a driver's traceback. Every
command turns these into ``error: …`` lines and exit status 2 (``bot.cli``); the
traceback is shown only with ``LOG_LEVEL=DEBUG``.

Values of secret settings are never repeated, and a database URL is only ever shown with
its password hidden.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable

from pydantic import SecretStr, ValidationError

# How to fix a setting whose value pydantic refused; the validators in bot/settings.py say
# their own fix.
_FIXES = {
    "PORT": "set PORT to a port number from 1 to 65535 (default 3000)",
    "CLEARANCE_TICK_SECONDS": "set it to a number of seconds above 0 (default 2.0)",
    "CLEARANCE_LEASE_SECONDS": "set it to a whole number of seconds, at least 10 (default 120)",
    "CLEARANCE_GRANT_ATTEMPTS": "set it to a whole number, at least 1 (default 8)",
    "CLEARANCE_REVOKE_ALERT_EVERY": "set it to a whole number, at least 1 (default 5)",
    "CLEARANCE_SHUTDOWN_SECONDS": "set it to a number of seconds above 0 (default 20)",
    "TEAMS_ALLOW_UNAUTHENTICATED": "set it to true or false (default false)",
}
DATABASE_URL_FORMS = (
    "sqlite+aiosqlite:///./clearance.db or postgresql+psycopg://USER:PASSWORD@HOST:5432/DB"
)


class ConfigurationError(ValueError):
    """One or more settings that cannot work; each of ``lines`` is one whole message."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def shown_url(url: str) -> str:
    """A database URL as it may be printed or logged: the password replaced by ***."""
    from sqlalchemy.engine import make_url  # not at import: `policy check` needs no database
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a URL)"


def settings_error(exc: ValidationError, secret: Iterable[str] = ()) -> ConfigurationError:
    """pydantic's report on the environment as one line per setting (values of the
    settings named in ``secret`` are not repeated)."""
    hidden = {name.upper() for name in secret}
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]).upper() if error["loc"] else "settings"
        if error["type"] == "value_error":
            # Our own validators: the message says what is wrong and the fix.
            lines.append(f"{name}: {error['ctx']['error']}")
            continue
        value = error.get("input")
        shown = "" if name in hidden or isinstance(value, SecretStr) else f" ({value!r})"
        fix = _FIXES.get(name, "see the Configuration table in README.md")
        lines.append(f"{name}{shown}: {error['msg'].lower()}; {fix}")
    return ConfigurationError(*lines)


def _driver_message(exc: BaseException) -> str:
    """The database driver's own words, without SQLAlchemy's SQL and background links."""
    seen: BaseException | None = exc
    while seen is not None:
        orig = getattr(seen, "orig", None)
        if orig is not None:
            seen = orig
            break
        if seen.__cause__ is None:
            break
        seen = seen.__cause__
    text = str(seen or exc).strip()
    return " ".join(text.split("\n")[0].split())


def database_error(exc: BaseException, url: str) -> ConfigurationError:
    """Why the database at ``url`` could not be used, and what to change."""
    from sqlalchemy.engine import make_url

    where = shown_url(url)
    message = _driver_message(exc)
    parsed = make_url(url)
    if m := re.search(r'database "([^"]+)" does not exist', message):
        fix = f"create it (createdb {m.group(1)}) or correct the database name"
        what = f'database "{m.group(1)}" does not exist'
    elif m := re.search(r'role "([^"]+)" does not exist', message):
        fix = f"create the role (createuser {m.group(1)}) or correct the user name"
        what = f'role "{m.group(1)}" does not exist'
    elif "password authentication failed" in message or "no password supplied" in message:
        what, fix = "the server refused the user and password", "correct them in the URL"
    elif "Connection refused" in message:
        what = f"nothing accepts connections on {parsed.host}:{parsed.port or 5432}"
        fix = "start PostgreSQL there or correct the host and port"
    elif "failed to resolve host" in message:
        what, fix = f"the host name '{parsed.host}' does not resolve", "correct the host"
    elif "timeout" in message.lower():
        what = f"{parsed.host}:{parsed.port or 5432} did not answer in time"
        fix = "check the host, port and firewall"
    elif "unable to open database file" in message:
        what = f"the SQLite file {parsed.database} cannot be created or opened"
        fix = "create its directory, or point the URL at a writable path"
    else:
        what, fix = message or type(exc).__name__, "check the URL and that the server is up"
    return ConfigurationError(f"DATABASE_URL: cannot use {where}: {what}; {fix}")


def address_error(exc: OSError, host: str, port: int) -> ConfigurationError:
    """Why ``clearance serve`` could not listen on ``host:port``."""
    if exc.errno == errno.EADDRINUSE:
        return ConfigurationError(
            f"PORT: port {port} on {host} is already in use (another clearance serve?); "
            "stop that process or set PORT to a free port"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ConfigurationError(
            f"PORT: not allowed to listen on port {port}; set PORT to 1024 or above"
        )
    return ConfigurationError(
        f"HOST: cannot listen on {host}:{port}: {exc.strerror or exc}; set HOST to an address "
        "of this machine (0.0.0.0 for all, 127.0.0.1 for this machine only)"
    )
