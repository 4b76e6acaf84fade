from shared.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    port: int = 8002
    group_id: str = "touchpoint-identity"
