from services.notification.main import build_app
from services.notification.settings import NotificationSettings
from shared.runtime import run

settings = NotificationSettings()
run("notification", build_app(settings), settings)
