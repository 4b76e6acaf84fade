from shared.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    port: int = 8002
    group_id: str = "touchpoint-identity"
    # Identity rules file (limits, priority, blocked values, caps, review types per tenant); re-read when it
    # changes. Unset: the built-in rules (services/identity/rules.py).
    identity_config: str | None = None
