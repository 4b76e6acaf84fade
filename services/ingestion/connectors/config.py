"""Per-tenant connector credentials, read once at start-up from ``TOUCHPOINT_CONNECTORS`` (JSON) and/or the
file named by ``TOUCHPOINT_CONNECTORS_FILE`` (the same JSON; entries in the variable win per tenant).

Shape (every section optional; see docs/connectors.md)::

    {"acme": {"whatsapp":  {"app_secret": "...", "verify_token": "..."},
              "messenger": {"app_secret": "...", "verify_token": "..."},
              "instagram": {"app_secret": "...", "verify_token": "..."},
              "twilio":    {"auth_token": "..."},
              "x":         {"consumer_secret": "..."},
              "generic":   {"crm": {"secret": "whsec_...", "tolerance_seconds": 300}},
              "webchat":   {"site_keys": {"site_abc": {"origins": ["https://www.acme.example"]}}},
              "email":     {"addresses": ["support@acme.example", "@help.acme.example"]}}}

Secrets are ``SecretStr``: they never appear in a repr, a log line or an error.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter



class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetaAppConfig(_Section):
    """A Meta app (WhatsApp Business Cloud API, Messenger, Instagram): the app secret signs every POST, the
    verify token is what you typed into the app dashboard for the GET handshake."""

    app_secret: SecretStr
    verify_token: SecretStr


class TwilioConfig(_Section):
    auth_token: SecretStr


class XConfig(_Section):
    """X Account Activity API: the app's consumer secret signs the CRC answer and every POST."""

    consumer_secret: SecretStr


class GenericWebhookConfig(_Section):
    """Standard Webhooks: ``secret`` as ``whsec_<base64>`` (or any other string, used as UTF-8 bytes)."""

    secret: SecretStr
    tolerance_seconds: int = Field(default=300, ge=1, le=3600)


class SiteKeyConfig(_Section):
    # Browser origins allowed to use this site key; empty = any origin (e.g. a native app).
    origins: list[str] = Field(default_factory=list)


class WebchatConfig(_Section):
    site_keys: dict[str, SiteKeyConfig] = Field(default_factory=dict)


class EmailConfig(_Section):
    # Recipient addresses (``support@acme.example``) or whole domains (``@acme.example``) of this tenant.
    addresses: list[str] = Field(default_factory=list)


class TenantConnectors(_Section):
    whatsapp: MetaAppConfig | None = None
    messenger: MetaAppConfig | None = None
    instagram: MetaAppConfig | None = None
    twilio: TwilioConfig | None = None
    x: XConfig | None = None
    generic: dict[str, GenericWebhookConfig] = Field(default_factory=dict)
    webchat: WebchatConfig | None = None
    email: EmailConfig | None = None


ConnectorsConfig = dict[str, TenantConnectors]
_ADAPTER = TypeAdapter(ConnectorsConfig)


def load_connectors(inline: ConnectorsConfig, path: Path | None) -> ConnectorsConfig:
    """The effective configuration: the file's tenants, then the inline ones. Raises on an invalid file."""
    merged: ConnectorsConfig = {}
    if path is not None:
        merged.update(_ADAPTER.validate_python(orjson.loads(path.read_bytes())))
    merged.update(inline)
    return merged
