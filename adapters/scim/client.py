"""A small async SCIM 2.0 client over aiohttp: the few requests Clearance needs.

Users are found by ``userName`` or email (filter), groups are changed with PATCH
add/remove of ``members`` (RFC 7644 section 3.5.2), so concurrent grants never overwrite
each other the way a PUT of the whole member list would.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from engine.ports import ConnectorError, ConnectorFailure

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SCIM_JSON = "application/scim+json"


@dataclass(frozen=True)
class ScimSettings:
    """Base URL (ending before /Users) and the environment variable holding the bearer token."""

    url: str
    token_env: str
    user_filter: str = 'userName eq "{email}"'
    group_by: str = "id"  # grant.group is the group's id, or its displayName ("displayName")
    timeout: float = 10.0

    @classmethod
    def from_options(cls, where: str, options: Mapping[str, Any]) -> ScimSettings:
        missing = [k for k in ("url", "token_env") if not options.get(k)]
        if missing:
            raise ValueError(f"{where} needs {', '.join(missing)}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known - {"type", "identity"})
        if unknown:
            raise ValueError(f"{where} has unknown keys: {', '.join(unknown)}")
        return cls(**{k: v for k, v in options.items() if k in known})


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class ScimClient:
    """Authenticated JSON requests to one SCIM service provider."""

    def __init__(self, settings: ScimSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._environ = environ if environ is not None else os.environ
        self._session: aiohttp.ClientSession | None = None

    def _token(self) -> str:
        token = self._environ.get(self.settings.token_env)
        if not token:
            raise ConnectorError(
                ConnectorFailure.AUTH,
                f"the environment variable {self.settings.token_env} is not set",
            )
        return token

    async def request(
        self,
        method: str,
        path: str,
        what: str,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout)
            )
        url = self.settings.url.rstrip("/") + path
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": SCIM_JSON}
        if json is not None:
            headers["Content-Type"] = SCIM_JSON
        try:
            async with self._session.request(
                method, url, json=json, params=params, headers=headers
            ) as response:
                body = (
                    await response.json(content_type=None) if response.content_length != 0 else None
                )
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            raise ConnectorError(
                ConnectorFailure.UNREACHABLE, f"SCIM server unreachable while {what}"
            ) from None
        if status in (401, 403):
            raise ConnectorError(
                ConnectorFailure.AUTH, f"SCIM server refused the token while {what}"
            )
        if status == 429 or status >= 500:
            raise ConnectorError(
                ConnectorFailure.UNREACHABLE, f"SCIM server busy ({status}) while {what}"
            )
        return status, body

    async def find_user(self, email: str) -> dict[str, Any] | None:
        query = self.settings.user_filter.format(email=_quote(email))
        status, body = await self.request(
            "GET", "/Users", f"looking up {email}", params={"filter": query}
        )
        if status != 200 or not isinstance(body, dict):
            raise ConnectorError(ConnectorFailure.REJECTED, f"SCIM user search failed ({status})")
        resources = body.get("Resources") or []
        return resources[0] if len(resources) == 1 else None

    async def group_id(self, group: str) -> str:
        if self.settings.group_by == "id":
            return group
        status, body = await self.request(
            "GET",
            "/Groups",
            f"finding group {group}",
            params={"filter": f'displayName eq "{_quote(group)}"'},
        )
        resources = (body or {}).get("Resources") or [] if status == 200 else []
        if len(resources) != 1:
            raise ConnectorError(ConnectorFailure.NO_SUCH_GROUP, f"no SCIM group named {group}")
        return str(resources[0]["id"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
