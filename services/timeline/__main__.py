from services.timeline.main import build_app
from services.timeline.settings import TimelineSettings
from shared.runtime import run

settings = TimelineSettings()
run("timeline", build_app(settings), settings)
