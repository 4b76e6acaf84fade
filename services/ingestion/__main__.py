from services.ingestion.main import build_app
from services.ingestion.settings import IngestionSettings
from shared.runtime import run

settings = IngestionSettings()
run("ingestion", build_app(settings), settings)
