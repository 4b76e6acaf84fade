from shared.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    port: int = 8002
    group_id: str = "touchpoint-identity"
    # Members of the group resolving ingested events in this process. With two, one batch decodes, builds and
    # publishes while another's transaction runs (transactions sharing identifiers still take turns on their
    # locks): a backlog drains about 10 % faster. In a steady flow each member's batches are half as large, and the
    # per-batch costs make identity and PostgreSQL spend more per event (docs/benchmarks.md): 1 unless identity
    # has to catch up.
    resolve_consumers: int = 1
    # Identity rules file (limits, priority, blocked values, caps, review types per tenant); re-read when it
    # changes. Unset: the built-in rules (services/identity/rules.py).
    identity_config: str | None = None
