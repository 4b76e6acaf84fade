from pathlib import Path

from pydantic import SecretStr

from shared.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    port: int = 8005
    group_id: str = "touchpoint-notification"
    # Triggers, caps, templates per tenant (deploy/notification/notification.yaml); re-read when it changes.
    notification_config: Path | None = None
    # How often due notifications are decided and sent (seconds).
    tick_interval_s: float = 0.5
    send_batch: int = 200
    send_concurrency: int = 16
    # A notification being sent belongs to its instance for this long; after that it is "in doubt" and sent
    # again with the same idempotency key.
    lease_s: float = 30.0
    # Transient provider failures: attempts per channel before falling back to the next channel.
    send_attempts: int = 3
    # Signs the answer links of follow-ups ("is your problem solved?").
    answer_secret: SecretStr = SecretStr("touchpoint-dev-answer-secret")
    # Email over SMTP (unset host: the email channel is not configured).
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "Touchpoint <notifications@touchpoint.invalid>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # SMS through a Twilio-style Messages API.
    twilio_base_url: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_status_callback_url: str | None = None
    # WhatsApp through a WhatsApp Cloud-style API; the app secret verifies status webhooks.
    whatsapp_base_url: str | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_access_token: SecretStr | None = None
    whatsapp_app_secret: SecretStr | None = None
    # Signed outbound webhooks (the URL is the customer's "webhook" address) and signed email status callbacks.
    webhook_secret: SecretStr | None = None
    email_callback_secret: SecretStr | None = None
