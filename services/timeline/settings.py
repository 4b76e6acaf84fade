from shared.settings import ServiceSettings


class TimelineSettings(ServiceSettings):
    port: int = 8003
    group_id: str = "touchpoint-timeline"
    page_size_max: int = 500
