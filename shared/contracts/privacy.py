"""Privacy requests from upstream systems (a privacy portal, the CRM's data-subject request workflow).

Upstream systems publish these to ``touchpoint.privacy.v1``; the identity service carries them out exactly as
the erasure API does (``POST /v1/identities/{customer_id}/erase``). Readers are tolerant (unknown fields are
ignored); a field is never renamed or retyped within a version.
"""

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.contracts import types
from shared.contracts.business import CustomerRef


class ErasureRequestedV1(BaseModel):
    """``touchpoint.privacy.erasure_requested.v1``: erase a customer's personal data everywhere (GDPR Art. 17).

    ``customer`` names the customer by Touchpoint's id or by identifiers (resolved the way identity resolves
    interactions). The CloudEvents ``id`` is the request's id: a redelivered or re-sent request is carried out
    once. A request naming nobody Touchpoint knows, or a customer already erased, is acknowledged as done.
    Prefer ``customer_id``: identifiers in the request are the requester's plaintext, kept on this topic for
    its retention.
    """

    model_config = ConfigDict(extra="ignore")

    customer: CustomerRef
    requested_at: AwareDatetime
    reason: Annotated[str, Field(max_length=1000)] | None = None


PRIVACY_MODELS: dict[str, type[BaseModel]] = {types.ERASURE_REQUESTED: ErasureRequestedV1}
