"""One LDAP server as Clearance reaches it: settings from the policy, secret from the
environment, a thread-safe ldap3 connection, and errors mapped to connector failures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from engine.ports import ConnectorError, ConnectorFailure

T = TypeVar("T")

# LDAP result codes that mean "already so" for an idempotent change.
ALREADY_MEMBER = 20  # attributeOrValueExists
NOT_A_MEMBER = 16  # noSuchAttribute
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
INSUFFICIENT_ACCESS = 50
OBJECT_CLASS_VIOLATION = 65


@dataclass(frozen=True)
class LdapSettings:
    """Where and how to reach the server; ``password_env`` names the variable with the secret."""

    url: str
    bind_dn: str
    password_env: str
    users_base: str
    groups_base: str
    user_filter: str = "(mail={email})"
    member_attribute: str = "member"
    mail_attribute: str = "mail"
    name_attribute: str = "displayName"
    manager_attribute: str = "manager"
    inactive_filter: str | None = None
    slack_id_attribute: str | None = None
    teams_id_attribute: str | None = None
    placeholder_member: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_options(cls, where: str, options: Mapping[str, Any]) -> LdapSettings:
        missing = [
            k
            for k in ("url", "bind_dn", "password_env", "users_base", "groups_base")
            if not options.get(k)
        ]
        if missing:
            raise ValueError(f"{where} needs {', '.join(missing)}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known - {"type", "identity"})
        if unknown:
            raise ValueError(f"{where} has unknown keys: {', '.join(unknown)}")
        return cls(**{k: v for k, v in options.items() if k in known})

    def group_dn(self, group: str) -> str:
        """A group given as a full DN, or as a cn under ``groups_base``."""
        return (
            group if "=" in group else f"cn={ldap3.utils.dn.escape_rdn(group)},{self.groups_base}"
        )

    def user_search(self, email: str) -> str:
        return self.user_filter.format(email=escape_filter_chars(email))


def failure(exc: BaseException, what: str) -> ConnectorError:
    """A typed connector failure; the message names the operation, never the credentials."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, ldap_errors.LDAPInvalidCredentialsResult | ldap_errors.LDAPBindError):
        return ConnectorError(ConnectorFailure.AUTH, f"LDAP bind refused while {what}")
    if isinstance(exc, ldap_errors.LDAPInsufficientAccessRightsResult):
        return ConnectorError(ConnectorFailure.AUTH, f"LDAP refused access while {what}")
    if isinstance(exc, ldap_errors.LDAPNoSuchObjectResult):
        return ConnectorError(ConnectorFailure.NO_SUCH_GROUP, f"no such LDAP entry while {what}")
    if isinstance(
        exc,
        ldap_errors.LDAPCommunicationError
        | ldap_errors.LDAPSocketOpenError
        | OSError
        | TimeoutError,
    ):
        return ConnectorError(ConnectorFailure.UNREACHABLE, f"LDAP server unreachable while {what}")
    return ConnectorError(
        ConnectorFailure.REJECTED, f"LDAP error while {what}: {type(exc).__name__}"
    )


def result_failure(result: Mapping[str, Any], what: str) -> ConnectorError:
    code = int(result.get("result", 80))
    if code in (INVALID_CREDENTIALS,):
        return ConnectorError(ConnectorFailure.AUTH, f"LDAP bind refused while {what}")
    if code == INSUFFICIENT_ACCESS:
        return ConnectorError(ConnectorFailure.AUTH, f"LDAP refused access while {what}")
    if code == NO_SUCH_OBJECT:
        return ConnectorError(ConnectorFailure.NO_SUCH_GROUP, f"no such LDAP group while {what}")
    return ConnectorError(
        ConnectorFailure.REJECTED,
        f"LDAP said {result.get('description', code)} while {what}",
    )


class LdapClient:
    """A lazily opened, thread-safe (SAFE_SYNC) connection, reopened after a failure."""

    def __init__(self, settings: LdapSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._environ = environ if environ is not None else os.environ
        self._conn: ldap3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> ldap3.Connection:
        with self._lock:
            if self._conn is None or self._conn.closed:
                password = self._environ.get(self.settings.password_env)
                if password is None:
                    raise ConnectorError(
                        ConnectorFailure.AUTH,
                        f"the environment variable {self.settings.password_env} is not set",
                    )
                # ldap3 packs timeouts into socket options, which take whole seconds.
                seconds = max(1, int(self.settings.timeout))
                server = ldap3.Server(
                    self.settings.url, get_info=ldap3.NONE, connect_timeout=seconds
                )
                self._conn = ldap3.Connection(
                    server,
                    self.settings.bind_dn,
                    password,
                    client_strategy=ldap3.SAFE_SYNC,
                    auto_bind=True,
                    receive_timeout=seconds,
                    raise_exceptions=False,
                )
            return self._conn

    def _reset(self) -> None:
        with self._lock:
            if self._conn is not None:
                # The connection may already be gone; there is nothing left to release then.
                with contextlib.suppress(Exception):
                    self._conn.unbind()
            self._conn = None

    async def run(self, what: str, op: Callable[[ldap3.Connection], T]) -> T:
        """Run a blocking ldap3 operation in a worker thread; map failures to ConnectorError."""

        def call() -> T:
            try:
                return op(self._connection())
            except ConnectorError:
                raise
            except Exception as exc:
                mapped = failure(exc, what)
                if mapped.failure in (ConnectorFailure.UNREACHABLE, ConnectorFailure.AUTH):
                    self._reset()
                raise mapped from None

        return await asyncio.to_thread(call)

    def close(self) -> None:
        self._reset()
