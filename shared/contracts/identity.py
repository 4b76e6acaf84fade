"""Identity graph change contracts (shaped like Segment's ``id_graph_updates``)."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.interaction import Identifier


class CustomersMergedV1(BaseModel):
    """``touchpoint.identity.customers_merged.v1``: customers found to be one person.

    ``merged_ids`` stop existing as customers and resolve to ``survivor_id`` (the oldest customer) from
    now on. Projections re-key everything they hold for ``merged_ids`` to the survivor.
    ``linking_identifiers`` are sealed under a data key of the survivor (``sealkey``), like a split's
    ``identifiers`` under one of the customer split from.
    """

    model_config = ConfigDict(extra="ignore")

    merge_id: str
    survivor_id: str
    merged_ids: list[str] = Field(min_length=1)
    rule: str
    linking_identifiers: list[Identifier]
    trigger_source: str
    trigger_event_id: str
    merged_at: datetime


class CustomerSplitV1(BaseModel):
    """``touchpoint.identity.customer_split.v1``: identifiers detached from a customer into a new one.

    Projections move to ``new_customer_id`` everything of ``customer_id`` that only these identifiers link to.
    """

    model_config = ConfigDict(extra="ignore")

    split_id: str
    customer_id: str
    new_customer_id: str
    identifiers: list[Identifier] = Field(min_length=1)
    reason: str
    split_at: datetime


class CustomerErasedV1(BaseModel):
    """``touchpoint.identity.customer_erased.v1``: a customer's personal data must be erased everywhere.

    ``merged_ids`` are the aliases that resolved to the customer; projections erase those too.
    By the time this is published the data keys of every event attributed to the customer are deleted, so
    sealed copies anywhere (topics, dead letters, a replay) can no longer be opened.
    """

    model_config = ConfigDict(extra="ignore")

    erasure_id: str
    customer_id: str
    merged_ids: list[str] = []
    requested_at: datetime
