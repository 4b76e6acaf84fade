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
    # Back-pressure (docs/services/ingestion.md): requests waiting for Kafka at once (more get 503), seconds a
    # publish may wait for Kafka's acknowledgement (then 503), the consumer backlog in records above which
    # requests get 429 (0 = off), how often that backlog is measured, and the Retry-After of refusals.
    max_in_flight_publishes: int = 256
    publish_timeout_seconds: float = 10.0
    max_consumer_lag: int = 500_000
    lag_check_seconds: float = 2.0
    retry_after_seconds: int = 5
    # Raw provider payloads kept for audit are cut to this many bytes.
    raw_payload_max_bytes: int = 256 * 1024
    # How often raw payloads that carried an erased customer's events are deleted (seconds).
    raw_payload_sweep_seconds: float = 10.0
    # The inbound SMTP listener (off unless enabled) and its largest accepted message.
    smtp_enabled: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_max_message_bytes: int = 10 * 1024 * 1024
