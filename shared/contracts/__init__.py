"""Event contracts: one pydantic model per versioned CloudEvents type, with an example each.

``MODELS`` maps each type to its model; ``examples/<type>.json`` holds a complete example CloudEvent per
type and ``schemas/<type>.json`` the committed JSON Schema of its data (regenerated and diffed by a test).
"""

from pathlib import Path

from pydantic import BaseModel

from shared.contracts import types
from shared.contracts.business import BUSINESS_MODELS
from shared.contracts.consent import CONSENT_MODELS
from shared.contracts.feedback import FEEDBACK_INBOUND_MODELS, FEEDBACK_MODELS
from shared.contracts.identity import CustomerErasedV1, CustomersMergedV1, CustomerSplitV1
from shared.contracts.interaction import (
    Identifier,
    InteractionIngestedV1,
    InteractionOccurredV1,
    InteractionResolvedV1,
)
from shared.contracts.notification import NOTIFICATION_MODELS
from shared.contracts.privacy import PRIVACY_MODELS
from shared.contracts.profile import PROFILE_MODELS
from shared.contracts.routing import AGENT_MODELS, CONVERSATION_MODELS, ROUTING_MODELS
from shared.contracts.timeline import CustomerSnapshotV1, TimelineEntryAddedV1

MODELS: dict[str, type[BaseModel]] = {
    types.INTERACTION_OCCURRED: InteractionOccurredV1,
    types.INTERACTION_INGESTED: InteractionIngestedV1,
    types.INTERACTION_RESOLVED: InteractionResolvedV1,
    types.CUSTOMERS_MERGED: CustomersMergedV1,
    types.CUSTOMER_SPLIT: CustomerSplitV1,
    types.CUSTOMER_ERASED: CustomerErasedV1,
    types.TIMELINE_ENTRY_ADDED: TimelineEntryAddedV1,
    types.CUSTOMER_SNAPSHOT: CustomerSnapshotV1,
    **AGENT_MODELS,
    **CONVERSATION_MODELS,
    **ROUTING_MODELS,
    **BUSINESS_MODELS,
    **CONSENT_MODELS,
    **NOTIFICATION_MODELS,
    **FEEDBACK_INBOUND_MODELS,
    **FEEDBACK_MODELS,
    **PRIVACY_MODELS,
    **PROFILE_MODELS,
}

CONTRACTS_DIR = Path(__file__).parent
EXAMPLES_DIR = CONTRACTS_DIR / "examples"
SCHEMAS_DIR = CONTRACTS_DIR / "schemas"

__all__ = [
    "MODELS", "EXAMPLES_DIR", "SCHEMAS_DIR", "Identifier", "InteractionOccurredV1", "InteractionIngestedV1",
    "InteractionResolvedV1", "CustomersMergedV1", "CustomerSplitV1", "CustomerErasedV1", "TimelineEntryAddedV1", "CustomerSnapshotV1", "types",
]
