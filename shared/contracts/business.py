"""Business contracts: what upstream systems (helpdesk, shop, carriers) report about cases, orders and shipments.

Upstream systems publish these to ``touchpoint.business.v1`` (keyed by case id, or by order id for orders and
shipments, so one case's or order's events stay in order); the notification service consumes them and decides
whether to tell the customer.

Upstream systems rarely know Touchpoint's customer id, so each event names its customer with a ``CustomerRef``:
the customer id when known, else identifiers (e-mail, phone, contract id, ...) that the consumer resolves itself.

Readers are tolerant (unknown fields are ignored) so that optional fields can be added within a version; a
field is never renamed or retyped within a version. Every instant is timezone-aware: a naive datetime is
rejected. Money is a decimal amount with an ISO 4217 currency code.
"""

from decimal import Decimal
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.contracts import types
from shared.contracts.interaction import Identifier

Id = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=1000)]


class CustomerRef(BaseModel):
    """The customer an upstream event is about: ``customer_id`` (Touchpoint's id) and/or ``identifiers``.

    At least one of the two is required. When both are given the id wins and the identifiers are a hint.
    """

    model_config = ConfigDict(extra="ignore")

    customer_id: Id | None = None
    identifiers: list[Identifier] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _names_someone(self) -> "CustomerRef":
        if self.customer_id is None and not self.identifiers:
            raise ValueError("a customer reference needs a customer_id or at least one identifier")
        return self


class CaseEvent(BaseModel):
    """What every ``touchpoint.case.*`` event carries: the case, its customer, and what is known about it at
    ``occurred_at``.

    ``channel`` is the channel the case came in on (email, sms, whatsapp, phone, chat, ...): a reply to the
    customer goes there first. ``conversation_id`` is routing's conversation id when the case is a conversation
    routing handles; ``complaint`` flags a case the customer opened as a complaint.
    """

    model_config = ConfigDict(extra="ignore")

    case_id: Id
    customer: CustomerRef
    occurred_at: AwareDatetime
    channel: str | None = Field(default=None, max_length=50)
    conversation_id: Id | None = None
    agent_id: Id | None = None
    team: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=200)
    complaint: bool = False
    subject: Text | None = None
    product: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=35)


class CaseOpenedV1(CaseEvent):
    """``touchpoint.case.opened.v1``: a case was opened for the customer."""


class CaseUpdatedV1(CaseEvent):
    """``touchpoint.case.updated.v1``: something changed on an open case; ``note`` says what, in words."""

    note: Text | None = None


class CaseResolvedV1(CaseEvent):
    """``touchpoint.case.resolved.v1``: the case was resolved (``agent_id`` is who resolved it)."""


class CaseReopenedV1(CaseEvent):
    """``touchpoint.case.reopened.v1``: a resolved case is open again."""


class OrderPlacedV1(BaseModel):
    """``touchpoint.order.placed.v1``: the customer placed order ``order_id``; ``items`` are display names."""

    model_config = ConfigDict(extra="ignore")

    order_id: Id
    customer: CustomerRef
    occurred_at: AwareDatetime
    total: Decimal | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    items: list[Text] = Field(default_factory=list, max_length=200)


class ShipmentEvent(BaseModel):
    """What every ``touchpoint.shipment.*`` event carries: the shipment, the order it belongs to, its customer,
    the carrier and the estimated time of arrival known at ``occurred_at``."""

    model_config = ConfigDict(extra="ignore")

    shipment_id: Id
    order_id: Id
    customer: CustomerRef
    occurred_at: AwareDatetime
    carrier: str | None = Field(default=None, max_length=200)
    eta: AwareDatetime | None = None


class ShipmentDispatchedV1(ShipmentEvent):
    """``touchpoint.shipment.dispatched.v1``: the shipment left the warehouse."""


class ShipmentDelayedV1(ShipmentEvent):
    """``touchpoint.shipment.delayed.v1``: the shipment will arrive at ``new_eta`` instead of ``previous_eta``.

    A carrier may report several delays of one order in a short time; consumers combine them as they see fit.
    """

    new_eta: AwareDatetime
    previous_eta: AwareDatetime | None = None
    reason: Text | None = None


class ShipmentDeliveredV1(ShipmentEvent):
    """``touchpoint.shipment.delivered.v1``: the shipment was delivered at ``occurred_at``."""


BUSINESS_MODELS: dict[str, type[BaseModel]] = {
    types.CASE_OPENED: CaseOpenedV1,
    types.CASE_UPDATED: CaseUpdatedV1,
    types.CASE_RESOLVED: CaseResolvedV1,
    types.CASE_REOPENED: CaseReopenedV1,
    types.ORDER_PLACED: OrderPlacedV1,
    types.SHIPMENT_DISPATCHED: ShipmentDispatchedV1,
    types.SHIPMENT_DELAYED: ShipmentDelayedV1,
    types.SHIPMENT_DELIVERED: ShipmentDeliveredV1,
}
