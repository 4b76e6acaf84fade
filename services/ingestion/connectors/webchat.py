"""Web chat: the rules behind the widget API (``services/ingestion/webchat.py`` is its HTTP face).

A site key (public, embedded in the website) names the tenant and the browser origins allowed to use it.
Starting a conversation returns a conversation token (a random secret, stored only as its SHA-256 hash):
the widget sends it with every later call, so knowing a conversation id alone reads or writes nothing.

What becomes of each message (source ``webchat``): a visitor message is an inbound ``chat`` interaction, an
agent reply an outbound one with ``agent_id``; both carry ``conversation_id`` = the conversation and the
visitor's identifiers (``cookie_id`` = the widget's visitor id, plus ``email`` when the visitor gave one).
Ids are ``<conversation id>:<client message id>``: a widget retrying a send with the same id is a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from services.ingestion.connectors.base import ConnectorError, NotConfigured, interaction
from services.ingestion.connectors.config import ConnectorsConfig

SOURCE = "webchat"


class Forbidden(ConnectorError):
    status = 403
    reason = "forbidden"


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    tenant: str
    site_key: str
    visitor_id: str
    email: str | None
    token_hash: str


def tenant_for_site_key(config: ConnectorsConfig, site_key: str | None, origin: str | None) -> tuple[str, str]:
    """(tenant, site key) for a widget call. Raises NotConfigured (unknown key) or Forbidden (origin)."""
    if site_key:
        for tenant, connectors in config.items():
            site = connectors.webchat.site_keys.get(site_key) if connectors.webchat else None
            if site is not None:
                if site.origins and origin not in site.origins:
                    raise Forbidden("this origin may not use the site key")
                return tenant, site_key
    raise NotConfigured("unknown site key", "unknown_site_key")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def start(tenant: str, site_key: str, visitor_id: str | None, email: str | None) -> tuple[Conversation, str]:
    """A new conversation and its token (returned once, never stored in plain)."""
    token = secrets.token_urlsafe(32)
    conversation = Conversation(str(uuid.uuid4()), tenant, site_key, visitor_id or str(uuid.uuid4()), email,
                                token_hash(token))
    return conversation, token


def authorise(conversation: Conversation | None, tenant: str, token: str | None) -> Conversation:
    """The conversation when ``token`` opens it for ``tenant``; NotConfigured (404) otherwise, so a caller
    learns nothing about conversations that are not theirs."""
    if conversation is None or conversation.tenant != tenant or not token:
        raise NotConfigured("no such conversation", "unknown_conversation")
    if not hmac.compare_digest(conversation.token_hash.encode(), token_hash(token).encode()):
        raise NotConfigured("no such conversation", "unknown_conversation")
    return conversation


def message_event(conversation: Conversation, message_id: str, text: str, direction: str, at: datetime,
                  agent_id: str | None = None):
    identifiers = [{"type": "cookie_id", "value": conversation.visitor_id}]
    if conversation.email:
        identifiers.append({"type": "email", "value": conversation.email})
    data = {"channel": "chat", "direction": direction, "identifiers": identifiers,
            "conversation_id": conversation.conversation_id, "text": text, "tags": ["webchat"]}
    if agent_id:
        data["agent_id"] = agent_id
    return interaction(SOURCE, f"{conversation.conversation_id}:{message_id}", data, at)
