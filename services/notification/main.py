"""Composition root of the notification service."""

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from services.notification import api
from services.notification.adapters import ChannelSender
from services.notification.adapters.smtp import SmtpSender
from services.notification.adapters.twilio import TwilioSmsSender
from services.notification.adapters.webhook import WebhookSender
from services.notification.adapters.whatsapp import WhatsAppCloudSender
from services.notification.config import ConfigSource
from services.notification.service import NotificationService
from services.notification.settings import NotificationSettings
from shared import topics
from shared.runtime import Resources, build_service


def make_senders(s: NotificationSettings) -> dict[str, ChannelSender]:
    """The channel adapters the settings configure; a channel without settings is not offered (its sends fail
    over to the next consented channel)."""
    senders: dict[str, ChannelSender] = {}
    if s.smtp_host:
        senders["email"] = SmtpSender(s.smtp_host, s.smtp_port, s.smtp_from, s.smtp_username, s.smtp_password,
                                      s.smtp_starttls)
    if s.twilio_base_url and s.twilio_account_sid and s.twilio_auth_token and s.twilio_from:
        senders["sms"] = TwilioSmsSender(s.twilio_base_url, s.twilio_account_sid, s.twilio_auth_token,
                                         s.twilio_from, s.twilio_status_callback_url)
    if s.whatsapp_base_url and s.whatsapp_phone_number_id and s.whatsapp_access_token:
        senders["whatsapp"] = WhatsAppCloudSender(s.whatsapp_base_url, s.whatsapp_phone_number_id,
                                                  s.whatsapp_access_token)
    if s.webhook_secret:
        senders["webhook"] = WebhookSender(None, s.webhook_secret)
    return senders


def build_app(settings: NotificationSettings, tracer_provider: TracerProvider | None = None) -> FastAPI:
    config_source = ConfigSource(settings.notification_config)

    def wire(res: Resources, app: FastAPI) -> None:
        events = res.metrics.counter("touchpoint_notification_events_total", "Notification events by kind", ("kind",))
        service = NotificationService(
            res.pool, res.producer, config_source, make_senders(settings), res.topic(topics.NOTIFICATIONS.name),
            settings.answer_secret, lease_s=settings.lease_s, batch_size=settings.send_batch,
            concurrency=settings.send_concurrency, send_attempts=settings.send_attempts,
            phone_region=settings.default_phone_region,
            on_event=lambda kind: events.labels(kind).inc())
        app.state.service = service
        app.state.settings = settings
        app.state.config_source = config_source
        res.subscribe(topics.CUSTOMERS.name, settings.group_id, service.process_customers)
        res.subscribe(topics.CONSENT.name, settings.group_id, service.process_consent)
        res.subscribe(topics.BUSINESS.name, settings.group_id, service.process_business)
        res.subscribe(topics.IDENTITY.name, settings.group_id, service.process_identity)
        res.subscribe(topics.ROUTING.name, settings.group_id, service.process_routing)
        res.subscribe(topics.FEEDBACK.name, settings.group_id, service.process_feedback)

        async def scheduler() -> None:
            await service.run(settings.tick_interval_s)

        res.background.append(scheduler)

    app = build_service("notification", settings, wire, title="Touchpoint notification",
                        tracer_provider=tracer_provider)
    app.include_router(api.router)
    return app
