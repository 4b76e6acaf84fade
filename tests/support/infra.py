"""Real Kafka and PostgreSQL for the test session.

Order of preference:
1. ``TOUCHPOINT_TEST_KAFKA_BOOTSTRAP_SERVERS`` and ``TOUCHPOINT_TEST_ADMIN_DATABASE_URL`` (a superuser DSN) are
   set: use those running servers.
2. A Docker engine answers: testcontainers (``apache/kafka`` in KRaft mode and ``postgres``).
3. Otherwise the same local starters as ``make run`` (``deploy/local/*.sh``), on their own ports and run
   directory (``.run/test``), stopped again at the end of the session.
Each stack then gets its own database and topic prefix, so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Infra:
    bootstrap_servers: str
    admin_dsn: str
    host: str = "127.0.0.1"
    port: int = 5432
    stop: object = None


def from_environment() -> Infra | None:
    kafka = os.environ.get("TOUCHPOINT_TEST_KAFKA_BOOTSTRAP_SERVERS")
    admin = os.environ.get("TOUCHPOINT_TEST_ADMIN_DATABASE_URL")
    return Infra(kafka, admin) if kafka and admin else None


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def with_testcontainers() -> Infra:
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415 - only where Docker exists
    from testcontainers.core.waiting_utils import wait_for_logs  # noqa: PLC0415
    from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

    pg = PostgresContainer("postgres:16", username="postgres", password="postgres", dbname="postgres").start()
    kafka = (
        DockerContainer("apache/kafka:4.1.1")
        .with_bind_ports(9092, 39092)
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://localhost:39092")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .start()
    )
    wait_for_logs(kafka, "Kafka Server started", timeout=120)

    def stop() -> None:
        kafka.stop()
        pg.stop()

    dsn = pg.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
    return Infra("localhost:39092", dsn, stop=stop)


class LocalInfra(Infra):
    """Kafka and PostgreSQL as local processes that a test may stop and start again."""

    def __init__(self, name: str, kafka_port: int, pg_port: int, **env: str) -> None:
        self.env = dict(os.environ, RUN_DIR=str(ROOT / ".run" / name), KAFKA_PORT=str(kafka_port),
                        KAFKA_CONTROLLER_PORT=str(kafka_port + 1), PG_PORT=str(pg_port), **env)
        super().__init__(f"127.0.0.1:{kafka_port}", f"postgres://postgres@127.0.0.1:{pg_port}/postgres", stop=self.stop_all)

    def run(self, script: str, action: str) -> None:
        subprocess.run(["bash", str(ROOT / "deploy/local" / f"{script}.sh"), action], check=True, env=self.env)

    def start_all(self) -> "LocalInfra":
        self.run("kafka", "start")
        self.run("postgres", "start")
        return self

    def stop_all(self) -> None:
        self.run("kafka", "stop")
        self.run("postgres", "stop")


def with_local_processes() -> Infra:
    return LocalInfra("test", 29092, 25432).start_all()


def start() -> Infra:
    return from_environment() or (with_testcontainers() if docker_available() else with_local_processes())
