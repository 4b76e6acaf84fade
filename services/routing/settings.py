from datetime import datetime
from pathlib import Path

from shared.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    port: int = 8004
    group_id: str = "touchpoint-routing"
    # Workflow, capacity, SLA and calendar configuration per tenant (deploy/routing/routing.yaml); re-read when
    # the file changes. Unset: built-in defaults (one general queue, 24x7, no SLA).
    routing_config: Path | None = None
    # How often due timers fire and waiting conversations are re-routed (seconds of real time).
    timer_interval_s: float = 0.25
    # Simulations only: routing time runs ``clock_speed`` times faster than real time from ``clock_origin``.
    clock_speed: float = 1.0
    clock_origin: datetime | None = None
