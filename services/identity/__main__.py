from services.identity.main import build_app
from services.identity.settings import IdentitySettings
from shared.runtime import run

settings = IdentitySettings()
run("identity", build_app(settings), settings)
