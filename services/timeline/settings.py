from shared.settings import ServiceSettings


class TimelineSettings(ServiceSettings):
    port: int = 8003
    group_id: str = "touchpoint-timeline"
    page_size_max: int = 500
    # Where the agent console reads live conversation state (queue position, SLA clocks) and identity
    # explanations; the caller's own key is passed on. Unset: those panels say the service is not configured.
    routing_url: str | None = None
    identity_url: str | None = None
    # How long a peer may take before the console shows its panel as unavailable.
    peer_timeout_seconds: float = 1.5
    # An open console page re-reads its customer at least this often, notification or not.
    live_idle_seconds: float = 15.0
