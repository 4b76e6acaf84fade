"""Connector test fixtures.

- :func:`fake_ingestion`: the webhook and web chat routes on a FastAPI app whose Kafka is a recording
  producer and whose audit log is in memory (no infrastructure; unit and fuzz tests).
- ``live``: the real ingestion app (``build_app``) served by uvicorn in a background thread on a fresh stack
  (database and topic prefix) of the session's real Kafka and PostgreSQL (integration tests).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from hypothesis import settings as hypothesis_settings
from pydantic import TypeAdapter

from services.ingestion import webchat, webhooks
from services.ingestion.connectors.config import ConnectorsConfig
from services.ingestion.connectors.intake import ConnectorIntake
from services.ingestion.main import build_app
from services.ingestion.pipeline import IngestionPipeline
from services.ingestion.settings import IngestionSettings
from shared.httpapi import install_error_handlers
from tests.connectors.providers import BASE_URL, CONFIG
from tests.support.recording import MemoryVault, RecordingProducer
from tests.support.stack import Stack, free_port, new_stack

# Fuzzing runs are reproducible from the printed seed; no example database in the work tree.
hypothesis_settings.register_profile("touchpoint", database=None)
hypothesis_settings.load_profile("touchpoint")


@dataclass
class MemoryAudit:
    kept: list[tuple[str, str, bytes, list[str]]] = field(default_factory=list)
    kids: list[list[str]] = field(default_factory=list)

    async def keep(self, tenant, connector, content_type, body, event_ids, kids=()) -> None:
        self.kept.append((tenant, connector, body, list(event_ids)))
        self.kids.append(list(kids))


@dataclass
class FakeIngestion:
    app: FastAPI
    producer: RecordingProducer
    audit: MemoryAudit
    vault: MemoryVault

    def published(self) -> list:
        """What was published, opened (personal fields are sealed on the topic)."""
        return [self.vault.opened(r) for r in self.producer.records]


def connectors_config(raw: dict = CONFIG) -> ConnectorsConfig:
    return TypeAdapter(ConnectorsConfig).validate_python(raw)


def fake_ingestion(max_body_bytes: int = 1024 * 1024) -> FakeIngestion:
    producer, audit, vault = RecordingProducer(), MemoryAudit(), MemoryVault()
    pipeline = IngestionPipeline(None, producer, "test.touchpoint.inbound.v1", "test.ingested", "default", "DE",
                                 vault=vault)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(webhooks.router)
    app.include_router(webchat.router)
    app.state.pipeline = pipeline
    app.state.intake = ConnectorIntake(connectors_config(), pipeline, audit)
    app.state.public_url = None
    app.state.max_body_bytes = max_body_bytes
    return FakeIngestion(app, producer, audit, vault)


@dataclass
class Live:
    stack: Stack
    url: str
    settings: IngestionSettings


class ThreadedServer:
    """uvicorn in its own thread and event loop, so sync tests (schemathesis) can call it too."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                                    lifespan="on", timeout_graceful_shutdown=5))
        self.thread = threading.Thread(target=self.server.run, name="ingestion-under-test", daemon=True)

    async def start(self, url: str, timeout: float = 60) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                try:
                    if (await client.get(url + "/readyz", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert self.thread.is_alive(), "the ingestion app did not start"
                await asyncio.sleep(0.2)
        raise TimeoutError("the ingestion app is not ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="session")
async def live(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    port = free_port()
    settings = IngestionSettings(
        kafka_bootstrap_servers=stack.bootstrap_servers, database_url=stack.database_url,
        topic_prefix=stack.prefix, connectors=connectors_config(), port=port, public_url=BASE_URL,
    )
    server = ThreadedServer(build_app(settings), port)
    url = f"http://127.0.0.1:{port}"
    await server.start(url)
    yield Live(stack, url, settings)
    server.stop()
