"""Feedback contracts: survey responses and product ratings from upstream, and what the feedback service did
about each survey and response.

Inbound, on ``touchpoint.feedback-inbound.v1`` (keyed by response id, or by product id for ratings): survey
responses collected outside Touchpoint (``response_submitted``) and product ratings (``product.rated``). Upstream
systems rarely know Touchpoint's customer id, so each names its customer with a ``CustomerRef``.

Outbound, on ``touchpoint.feedback.v1`` (keyed by customer id; a product alert by product id): the feedback
service invites a customer to a survey (``invited``) or decides not to (``suppressed``), records a response
(``responded``), flags a detractor and asks routing for a follow-up conversation (``detractor_detected``), reports
the follow-up resolved (``loop_closed``) and warns when a product's ratings fall (``product_alert``). The
timeline records the customer's events, the notification service sends invitations, routing opens follow-ups.

Metrics: ``nps`` scores 0–10, ``csat`` 1–5, ``ces`` 1–7. A detractor is an NPS of 0–6, a CSAT of 1–2 or a CES of
1–3.

Readers are tolerant (unknown fields are ignored) so that optional fields can be added within a version; a
field is never renamed or retyped within a version. Every instant is timezone-aware: a naive datetime is
rejected.
"""

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.contracts import types
from shared.contracts.business import CustomerRef, Id, Text

Code = Annotated[str, Field(min_length=1, max_length=200)]
Name = Annotated[str, Field(max_length=200)]
ChannelName = Annotated[str, Field(max_length=50)]
Language = Annotated[str, Field(max_length=35)]
Metric = Literal["nps", "csat", "ces"]
SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
# A question's answer: a score or a choice/free text. Keyed by question id (``nps``, ``csat``, ``comment``, ...).
Answers = Annotated[dict[str, int | Annotated[str, Field(max_length=2000)]], Field(max_length=100)]


class ResponseSubmittedV1(BaseModel):
    """``touchpoint.feedback.response_submitted.v1``: the customer answered survey ``survey_id`` outside Touchpoint
    (an upstream survey tool, an in-app form).

    ``response_id`` is the upstream system's id: a response counts once however often it is delivered. The
    optional fields attribute the response to what it was about (conversation, case, agent, team, channel,
    product); ``language`` is the language the customer answered in.
    """

    model_config = ConfigDict(extra="ignore")

    response_id: Id
    survey_id: Id
    customer: CustomerRef
    submitted_at: AwareDatetime
    answers: Answers
    channel: ChannelName | None = None
    conversation_id: Id | None = None
    case_id: Id | None = None
    agent_id: Id | None = None
    team: Name | None = None
    product: Name | None = None
    language: Language | None = None


class ProductRatedV1(BaseModel):
    """``touchpoint.product.rated.v1``: the customer rated product ``product_id`` ``rating`` stars (1–5) at
    ``occurred_at``, optionally with a written ``review``. ``rating_id`` is the upstream id (counted once)."""

    model_config = ConfigDict(extra="ignore")

    rating_id: Id
    product_id: Id
    rating: int = Field(ge=1, le=5)
    customer: CustomerRef
    occurred_at: AwareDatetime
    review: Annotated[str, Field(max_length=5000)] | None = None


class FeedbackEvent(BaseModel):
    """What every customer's ``touchpoint.feedback.*`` event carries: the invitation it is about, the customer,
    the survey and the instant ``at`` the feedback service decided or observed what the event reports.

    ``invitation_id`` is None only for a response submitted upstream without an invitation (and the detractor
    follow-up that response leads to).
    """

    model_config = ConfigDict(extra="ignore")

    invitation_id: Id | None = None
    customer_id: Id
    survey_id: Id
    at: AwareDatetime


class FeedbackInvitedV1(FeedbackEvent):
    """``touchpoint.feedback.invited.v1``: the customer is invited to answer the survey at ``link`` (signed,
    valid until ``expires_at``), titled ``survey_title`` in ``language``.

    ``trigger`` names the configured trigger that asked for the survey; ``channel``, ``conversation_id``,
    ``case_id``, ``agent_id``, ``team`` and ``product`` are copied from the triggering event, so the response is
    attributed to them; ``channel`` is also where an in-channel invitation goes.
    """

    invitation_id: Id
    link: str = Field(min_length=1, max_length=2000)
    expires_at: AwareDatetime
    trigger: Code
    survey_title: Text | None = None
    language: Language | None = None
    channel: ChannelName | None = None
    conversation_id: Id | None = None
    case_id: Id | None = None
    agent_id: Id | None = None
    team: Name | None = None
    product: Name | None = None


class FeedbackSuppressedV1(FeedbackEvent):
    """``touchpoint.feedback.suppressed.v1``: no survey is sent for ``trigger``.

    ``reason`` is the machine code (``duplicate_conversation``, ``duplicate_window``, ``recontact_days``,
    ``customer_fatigue``, ``not_sampled``, ...) and ``detail`` one human sentence.
    """

    invitation_id: Id
    trigger: Code
    reason: Code
    detail: Text


class FeedbackRespondedV1(FeedbackEvent):
    """``touchpoint.feedback.responded.v1``: the customer's response ``response_id`` was recorded.

    ``metric`` and ``score`` are the survey's primary question and its answer (None when the survey has none or
    it was left unanswered). ``answers`` holds the scores and choices; free-text answers are left out because
    they may hold personal data. ``source`` is ``link`` for an answer through the survey link, ``upstream`` for
    a ``response_submitted`` event. The attribution fields come from the invitation (or the upstream response).
    """

    response_id: Id
    source: Literal["link", "upstream"]
    metric: Metric | None = None
    score: int | None = Field(default=None, ge=0, le=10)
    answers: Answers = Field(default_factory=dict)
    channel: ChannelName | None = None
    conversation_id: Id | None = None
    case_id: Id | None = None
    agent_id: Id | None = None
    team: Name | None = None
    product: Name | None = None

    @model_validator(mode="after")
    def _score_on_its_scale(self) -> "FeedbackRespondedV1":
        _check_scale(self.metric, self.score)
        return self


class DetractorDetectedV1(FeedbackEvent):
    """``touchpoint.feedback.detractor_detected.v1``: response ``response_id`` scored ``score`` on ``metric``, a
    detractor; routing opens the follow-up conversation ``follow_up_conversation_id`` for ``team`` on ``channel``
    (e-mail when that is no conversational channel), its priority raised by ``priority``.

    ``follow_up_conversation_id`` is ``feedback-followup:<response_id>``, so a replay asks for the same
    conversation. ``conversation_id`` and ``agent_id`` name the original conversation and its agent;
    ``sla_s`` is the resolution target the feedback service expects and ``due_at`` the instant it ends.
    """

    response_id: Id
    metric: Metric
    score: int = Field(ge=0, le=10)
    follow_up_conversation_id: Id
    priority: int = 0
    sla_s: int = Field(gt=0)
    due_at: AwareDatetime
    conversation_id: Id | None = None
    team: Name | None = None
    agent_id: Id | None = None
    channel: ChannelName | None = None
    language: Language | None = None

    @model_validator(mode="after")
    def _score_on_its_scale(self) -> "DetractorDetectedV1":
        _check_scale(self.metric, self.score)
        return self


class LoopClosedV1(FeedbackEvent):
    """``touchpoint.feedback.loop_closed.v1``: routing resolved the detractor follow-up
    ``follow_up_conversation_id`` of response ``response_id``.

    ``time_to_close_s`` is ``closed_at - opened_at`` in seconds; ``resurvey_invitation_id`` is the invitation
    asking the customer again, None when no re-survey follows.
    """

    response_id: Id
    follow_up_conversation_id: Id
    opened_at: AwareDatetime
    closed_at: AwareDatetime
    time_to_close_s: float = Field(ge=0)
    resurvey_invitation_id: Id | None = None


class ProductAlertV1(BaseModel):
    """``touchpoint.feedback.product_alert.v1``: the average of ``count`` ratings of ``product`` fell to
    ``average``, below ``threshold``. About a product, not a customer: keyed by product id."""

    model_config = ConfigDict(extra="ignore")

    product: Id
    average: float = Field(ge=1, le=5)
    count: int = Field(ge=1)
    threshold: float
    at: AwareDatetime


def _check_scale(metric: str | None, score: int | None) -> None:
    if metric is None or score is None:
        return
    low, high = SCALES[metric]
    if not low <= score <= high:
        raise ValueError(f"a {metric} score is {low}..{high}, not {score}")


FEEDBACK_INBOUND_MODELS: dict[str, type[BaseModel]] = {
    types.FEEDBACK_RESPONSE_SUBMITTED: ResponseSubmittedV1,
    types.PRODUCT_RATED: ProductRatedV1,
}

FEEDBACK_MODELS: dict[str, type[BaseModel]] = {
    types.FEEDBACK_INVITED: FeedbackInvitedV1,
    types.FEEDBACK_SUPPRESSED: FeedbackSuppressedV1,
    types.FEEDBACK_RESPONDED: FeedbackRespondedV1,
    types.FEEDBACK_DETRACTOR_DETECTED: DetractorDetectedV1,
    types.FEEDBACK_LOOP_CLOSED: LoopClosedV1,
    types.FEEDBACK_PRODUCT_ALERT: ProductAlertV1,
}
