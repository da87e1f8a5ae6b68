"""What Clearance keeps about its chat conversations, as plain values.

They live here, not in ``bot/``, because ``storage/`` builds them from its rows and may
import nothing of ours but ``engine``; the ports that store them are in ``bot/chat_records``.
"""

from __future__ import annotations

from dataclasses import dataclass

# The conversation type Teams gives a 1:1 chat between a person and the bot.
PERSONAL = "personal"


@dataclass(frozen=True)
class SentMessage:
    """A message that can be updated in place (Slack channel + ts, Teams conversation + id)."""

    request_id: str
    platform: str
    recipient: str
    template: str
    stage: int | None
    channel: str
    message_id: str


@dataclass(frozen=True)
class TeamsConversation:
    """One conversation: who is in it (for 1:1 chats) and how to reach it."""

    conversation_id: str
    kind: str  # personal | channel | groupChat
    service_url: str
    bot_id: str
    tenant_id: str | None = None
    user_id: str | None = None
    user_aad_id: str | None = None
    email: str | None = None
    team_id: str | None = None
