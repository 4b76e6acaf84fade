# One image for every Touchpoint process: the six services and the operations CLI.
# Compose (or any orchestrator) picks the process by its command, e.g.
#   python -m services.ingestion | services.identity | services.timeline | services.routing |
#     services.notification | services.feedback
#   python -m shared.cli migrate | create-topics
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 touchpoint \
 && useradd --system --uid 10001 --gid touchpoint --no-create-home --home-dir /nonexistent touchpoint

WORKDIR /app
COPY pyproject.toml ./
COPY shared/ shared/
COPY services/ services/
RUN find shared services -name __pycache__ -type d -prune -exec rm -rf {} + \
 && pip install . \
 && rm -rf build *.egg-info

USER touchpoint

CMD ["python", "-c", "print('Touchpoint image: give the process to run as the command.\\n  python -m services.ingestion | services.identity | services.timeline | services.routing | services.notification | services.feedback\\n  python -m shared.cli migrate | create-topics | db-init --admin-url URL | api-keys ...\\nSettings come from TOUCHPOINT_* environment variables.')"]
