from services.feedback.main import build_app
from services.feedback.settings import FeedbackSettings
from shared.runtime import run

settings = FeedbackSettings()
run("feedback", build_app(settings), settings)
