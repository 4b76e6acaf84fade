from services.routing.main import build_app
from services.routing.settings import RoutingSettings
from shared.runtime import run

settings = RoutingSettings()
run("routing", build_app(settings), settings)
