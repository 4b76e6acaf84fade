from pathlib import Path

from services.ingestion.connectors.config import TenantConnectors
from shared.settings import ServiceSettings


class IngestionSettings(ServiceSettings):
    port: int = 8001
    # Largest accepted HTTP body; larger requests get 413 before the body is read.
    max_body_bytes: int = 1024 * 1024
    group_id: str = "touchpoint-ingestion"
    # Channel connectors (docs/connectors.md): per-tenant credentials as JSON in TOUCHPOINT_CONNECTORS and/or
    # in the file TOUCHPOINT_CONNECTORS_FILE names.
    connectors: dict[str, TenantConnectors] = {}
    connectors_file: Path | None = None
    # Base URL under which providers reach this service (Twilio signs the full URL); unset = the request's URL.
    public_url: str | None = None
    # Raw provider payloads kept for audit are cut to this many bytes.
    raw_payload_max_bytes: int = 256 * 1024
    # The inbound SMTP listener (off unless enabled) and its largest accepted message.
    smtp_enabled: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_max_message_bytes: int = 10 * 1024 * 1024
