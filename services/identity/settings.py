from shared.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    port: int = 8002
    group_id: str = "touchpoint-identity"
    # Members of the group resolving ingested events in this process. A batch spends about half its time in its
    # transaction waiting on PostgreSQL; with two, one batch decodes, builds and publishes while the other's
    # transaction runs (they serialise on shared identifiers' locks as separate instances do).
    resolve_consumers: int = 2
    # Identity rules file (limits, priority, blocked values, caps, review types per tenant); re-read when it
    # changes. Unset: the built-in rules (services/identity/rules.py).
    identity_config: str | None = None
