"""Between Clearance's rendered Teams templates and Bot Framework activities."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from botbuilder.core import InvokeResponse
from botbuilder.schema import Activity, ActivityTypes, AdaptiveCardInvokeResponse, Attachment

from bot.ingress import MessageRef
from engine.chat_records import PERSONAL, TeamsConversation

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
_MESSAGE_RESPONSE = "application/vnd.microsoft.activity.message"


def card_activity(message: Mapping[str, Any]) -> Activity:
    """A message carrying a rendered template (``{"summary", "card"}``) as an Adaptive Card.

    ``summary`` is what Teams shows in notifications and the chat list.
    """
    return Activity(
        type=ActivityTypes.message,
        summary=str(message.get("summary") or ""),
        attachments=[Attachment(content_type=ADAPTIVE_CARD, content=message["card"])],
    )


def card_response(message: Mapping[str, Any]) -> InvokeResponse:
    """Answer an ``adaptiveCard/action`` by replacing the card with a rendered template.

    The body is a model object, serialized exactly once by the route: botbuilder 4.17's
    default path serializes it twice and answers 500 ('dict' has no 'is_xml_model').
    """
    return InvokeResponse(
        status=int(HTTPStatus.OK),
        body=AdaptiveCardInvokeResponse(
            status_code=int(HTTPStatus.OK), type=ADAPTIVE_CARD, value=message["card"]
        ),
    )


def message_response(text: str) -> InvokeResponse:
    """Answer an ``adaptiveCard/action`` with a short text; the card stays as it is.

    A plain dict: the schema types ``value`` as an object, and here it is a string.
    """
    body = {"statusCode": int(HTTPStatus.OK), "type": _MESSAGE_RESPONSE, "value": text}
    return InvokeResponse(status=int(HTTPStatus.OK), body=body)


def channel_data(activity: Activity) -> dict[str, Any]:
    data = activity.channel_data
    return data if isinstance(data, dict) else {}


def tenant_of(activity: Activity) -> str | None:
    tenant = channel_data(activity).get("tenant") or {}
    value = tenant.get("id") if isinstance(tenant, dict) else None
    if not value and activity.conversation is not None:
        value = activity.conversation.tenant_id
    return str(value) if value else None


def channel_of(activity: Activity) -> str:
    """The channel (or chat) id an activity came from, without a thread's ``;messageid=``."""
    channel = channel_data(activity).get("channel") or {}
    value = channel.get("id") if isinstance(channel, dict) else None
    if not value and activity.conversation is not None:
        value = (activity.conversation.id or "").split(";", 1)[0]
    return str(value or "")


def is_personal(activity: Activity) -> bool:
    kind = activity.conversation.conversation_type if activity.conversation else None
    return (kind or PERSONAL) == PERSONAL


def conversation_of(activity: Activity, email: str | None = None) -> TeamsConversation:
    """The conversation an activity came from, as something to keep for proactive messages."""
    personal = is_personal(activity)
    sender = activity.from_property
    team = channel_data(activity).get("team") or {}
    conversation_id = (activity.conversation.id if activity.conversation else "") or ""
    return TeamsConversation(
        conversation_id=conversation_id if personal else conversation_id.split(";", 1)[0],
        kind=PERSONAL if personal else str(activity.conversation.conversation_type or "channel"),
        service_url=activity.service_url or "",
        bot_id=(activity.recipient.id if activity.recipient else "") or "",
        tenant_id=tenant_of(activity),
        user_id=sender.id if personal and sender else None,
        user_aad_id=sender.aad_object_id if personal and sender else None,
        email=email if personal else None,
        team_id=str(team.get("id")) if isinstance(team, dict) and team.get("id") else None,
    )


def replied_to(activity: Activity) -> MessageRef:
    """The message whose card was acted on (Teams names it in ``replyToId``)."""
    conversation = (activity.conversation.id if activity.conversation else None) or ""
    return MessageRef("teams", conversation, activity.reply_to_id or "")
