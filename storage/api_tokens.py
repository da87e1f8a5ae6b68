"""People's API tokens (kept hashed) and workload tokens already used to change something.

A personal token's secret is shown once when it is made; only its SHA-256 is stored, so a
copy of the database does not hold usable tokens. A workload token's ``jti`` is recorded
the first time it files or cancels a request: the primary key refuses it the second time,
on every replica, until the token would have expired anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from storage.database import Database
from storage.tables import ApiTokenRow, TokenUseRow


@dataclass(frozen=True)
class ApiToken:
    """A stored personal token (without its secret)."""

    id: str
    owner: str
    secret_hash: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


def _token(row: ApiTokenRow) -> ApiToken:
    return ApiToken(
        id=row.id,
        owner=row.owner,
        secret_hash=row.secret_hash,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class ApiTokens:
    """Personal tokens and used workload ``jti``s (``bot.api_auth`` port ``TokenStore``)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def add(self, token: ApiToken) -> None:
        async with self.database.transaction() as session:
            session.add(
                ApiTokenRow(
                    id=token.id,
                    owner=token.owner,
                    secret_hash=token.secret_hash,
                    created_by=token.created_by,
                    created_at=token.created_at,
                    expires_at=token.expires_at,
                )
            )

    async def get(self, token_id: str) -> ApiToken | None:
        async with self.database.transaction() as session:
            row = await session.get(ApiTokenRow, token_id)
            return _token(row) if row else None

    async def of(self, owner: str | None = None) -> list[ApiToken]:
        """Tokens, newest first; one person's when ``owner`` is given."""
        query = select(ApiTokenRow).order_by(col(ApiTokenRow.created_at).desc())
        if owner is not None:
            query = query.where(col(ApiTokenRow.owner) == owner.lower())
        async with self.database.transaction() as session:
            return [_token(r) for r in (await session.execute(query)).scalars()]

    async def revoke(self, token_id: str, now: datetime) -> ApiToken | None:
        """Revoke a token (again is fine: the first time is kept); None when unknown."""
        async with self.database.transaction() as session:
            row = await session.get(ApiTokenRow, token_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = now
                session.add(row)
            return _token(row)

    async def used(self, token_id: str, now: datetime) -> None:
        async with self.database.transaction() as session:
            await session.execute(
                update(ApiTokenRow).where(col(ApiTokenRow.id) == token_id).values(last_used_at=now)
            )

    async def first_use(self, issuer: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """Record a workload token's jti; False when it was recorded before (a replay).

        Expired records go first: their tokens are refused as expired anyway."""
        try:
            async with self.database.transaction() as session:
                await session.execute(delete(TokenUseRow).where(col(TokenUseRow.expires_at) < now))
                session.add(TokenUseRow(issuer=issuer, jti=jti, expires_at=expires_at))
        except IntegrityError:
            return False
        return True

    async def forget(self, issuer: str, jti: str) -> None:
        async with self.database.transaction() as session:
            await session.execute(
                delete(TokenUseRow).where(
                    col(TokenUseRow.issuer) == issuer, col(TokenUseRow.jti) == jti
                )
            )
