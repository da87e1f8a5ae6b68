"""Logging: text lines (default) or one JSON object per line (``LOG_FORMAT=json``).

Each line carries what is known of the work it belongs to: the HTTP request being served
(``http_request``, from ``X-Request-Id`` or made up), the access request (``request_id``,
``R-…``) and the person acting (``actor``). They travel in a context variable, so every
line logged while serving one request or running one outbox job carries them, from any
module, without being passed around.

Secrets never reach the log: the values of the secret settings, the database password
and the secrets the policy's connectors read from the environment are replaced by ``***``
in every formatted line, exception texts included. Code does not log them in the first
place; this is the net under that rule.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO
from urllib.parse import quote

from bot.settings import Settings

# The fields a line may carry besides time, level, logger and message, in this order.
CONTEXT_FIELDS = ("request_id", "actor", "http_request")
_context: ContextVar[dict[str, str]] = ContextVar("clearance_log_context", default={})  # noqa: B039 - never mutated, only replaced
# Shorter values are not treated as secrets: masking them would mangle ordinary words.
_MIN_SECRET_LENGTH = 6
_MASK = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Lines logged inside the block (and in tasks it starts) carry ``fields``."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: str | None) -> None:
    """Add ``fields`` for the rest of the current block or task (the actor, once known)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})


def context() -> dict[str, str]:
    return dict(_context.get())


class _Context(logging.Filter):
    """Copies the context onto each record where it is logged (the caller's task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.clearance_context = _context.get()
        return True


class _Redacting(logging.Formatter):
    """Formats with ``inner`` and masks every known secret in the result."""

    def __init__(self, inner: logging.Formatter, secrets: set[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = secrets  # shared: secrets known later (the policy's) are added to it
        self._forms: tuple[frozenset[str], list[str]] = (frozenset(), [])

    def forms(self) -> list[str]:
        """Each secret also as it appears inside a JSON string and percent-encoded in a URL
        (a DSN in a driver's error); longest first, so a secret that contains another is
        masked whole."""
        known = frozenset(self.secrets)
        if known != self._forms[0]:
            found = {f for s in known for f in (s, json.dumps(s)[1:-1], quote(s, safe=""))}
            self._forms = (known, sorted(found, key=len, reverse=True))
        return self._forms[1]

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for form in self.forms():
            if form in text:
                text = text.replace(form, _MASK)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        found: dict[str, str] = getattr(record, "clearance_context", {})
        entry.update({k: found[k] for k in CONTEXT_FIELDS if k in found})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with the context in brackets where there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        found: dict[str, str] = getattr(record, "clearance_context", {})
        tags = " ".join(f"{k}={found[k]}" for k in CONTEXT_FIELDS if k in found)
        return f"{line} [{tags}]" if tags else line


_secrets: set[str] = set()


def add_secrets(values: Iterable[str | None]) -> None:
    """Mask these values too from now on (secrets known only once the policy is loaded)."""
    _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET_LENGTH)


def settings_secrets(settings: Settings) -> list[str]:
    """The secret values among the settings: every SecretStr and the database password."""
    from sqlalchemy.engine import make_url

    values = [
        value.get_secret_value()
        for name in type(settings).model_fields
        if hasattr(value := getattr(settings, name), "get_secret_value")
    ]
    password = make_url(settings.database_url).password
    if password:
        values.append(str(password))
    return values


def configure(settings: Settings, stream: IO[str] | None = None) -> None:
    """Send every log line to ``stream`` (standard error) as LOG_FORMAT and LOG_LEVEL say."""
    add_secrets(settings_secrets(settings))
    inner: logging.Formatter = JsonFormatter() if settings.log_format == "json" else TextFormatter()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Redacting(inner, _secrets))
    handler.addFilter(_Context())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    migration = logging.getLogger("alembic.runtime.migration")
    if not any(isinstance(f, _DropAlembicChatter) for f in migration.filters):
        migration.addFilter(_DropAlembicChatter())
    # The scheduler logs every tick at INFO; only its problems are worth a line.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # One access line per health probe and scrape drowns what matters: only when debugging.
    if settings.log_level != "DEBUG":
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class _DropAlembicChatter(logging.Filter):
    """Alembic says which dialect it uses each time it connects: nothing to act on, and it
    would come before the one line that tells an operator what is wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("Context impl", "Will assume"))


class _DropBoltTokenWarning(logging.Filter):
    """bolt reads SLACK_BOT_TOKEN from the environment even when it is handed a client
    that holds that very token, then warns that the token "will be unused" at every start.
    Nothing is wrong, and an operator should not learn to ignore warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def quiet_bolt() -> None:
    """Install the filter above (idempotent); before the bolt app is built."""
    bolt = logging.getLogger("slack_bolt.AsyncApp")
    if not any(isinstance(f, _DropBoltTokenWarning) for f in bolt.filters):
        bolt.addFilter(_DropBoltTokenWarning())
