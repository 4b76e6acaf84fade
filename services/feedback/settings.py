from pathlib import Path

from pydantic import SecretStr

from shared.settings import ServiceSettings


class FeedbackSettings(ServiceSettings):
    port: int = 8006
    group_id: str = "touchpoint-feedback"
    # Surveys, triggers, fatigue rules per tenant (deploy/feedback/feedback.yaml); re-read when it changes.
    feedback_config: Path | None = None
    # How often due invitations are sent and metric gauges refreshed (seconds).
    tick_interval_s: float = 0.5
    gauge_interval_s: float = 15.0
    # Signs survey links; must be the same on every instance.
    survey_secret: SecretStr = SecretStr("touchpoint-dev-survey-secret")
