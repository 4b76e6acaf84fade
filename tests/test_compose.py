"""Static checks of docker-compose.yml: schema-valid, wired in the right order, settings that exist."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings

from services.feedback.config import load_config as load_feedback_config
from services.notification.config import load_config as load_notification_config
from services.routing.config import load_config as load_routing_config
from shared.settings import ServiceSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
TOUCHPOINT_SERVICES = ("ingestion", "identity", "timeline", "routing", "notification", "feedback")
SETUP_JOBS = ("migrate", "topics-init")
# Long-running services that cannot carry a healthcheck, with the reason; nothing may wait on them being healthy.
NO_HEALTHCHECK = {"otel-collector": "distroless image: no shell or HTTP client to run a probe with"}
ENV_PREFIX = "TOUCHPOINT_"
# Services that read a configuration file (TOUCHPOINT_<SERVICE>_CONFIG, deploy/<service>/<service>.yaml).
CONFIG_LOADERS = {"routing": load_routing_config, "notification": load_notification_config,
                  "feedback": load_feedback_config}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _environment(service: dict) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "NAME=value" list form
        return dict((item.split("=", 1) + [None])[:2] for item in env)
    return dict(env)


def _depends_on(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short form: plain names mean service_started
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def _one_shot_jobs(services: dict) -> set[str]:
    """Services something waits on to finish, i.e. jobs that run once and exit."""
    return {name for svc in services.values() for name, dep in _depends_on(svc).items()
            if dep.get("condition") == "service_completed_successfully"}


def _settings_class(service_name: str) -> type[BaseSettings]:
    if service_name in TOUCHPOINT_SERVICES:
        module = importlib.import_module(f"services.{service_name}.settings")
        return getattr(module, f"{service_name.capitalize()}Settings")
    return ServiceSettings


def test_compose_file_matches_the_compose_spec():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, f"check-jsonschema failed:\n{result.stdout}\n{result.stderr}"


def test_no_obsolete_version_key(compose):
    assert "version" not in compose


def test_every_service_has_a_healthcheck_or_is_a_one_shot_job(compose):
    services = compose["services"]
    jobs = _one_shot_jobs(services)
    assert set(SETUP_JOBS) <= jobs
    for name, svc in services.items():
        if name in jobs:
            assert svc.get("restart", "no") == "no", f"one-shot job {name} must not restart"
            continue
        if name in NO_HEALTHCHECK:
            assert "healthcheck" not in svc
            continue
        check = svc.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name} has no healthcheck"


def test_nothing_waits_on_a_service_without_healthcheck_being_healthy(compose):
    services = compose["services"]
    for name, svc in services.items():
        for dep, spec in _depends_on(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits on {dep}, which has no healthcheck"


@pytest.mark.parametrize("name", TOUCHPOINT_SERVICES)
def test_services_start_after_migrations_and_topics(compose, name):
    svc = compose["services"][name]
    deps = _depends_on(svc)
    for job in SETUP_JOBS:
        assert deps.get(job, {}).get("condition") == "service_completed_successfully", (name, job)
    assert svc["command"] == ["python", "-m", f"services.{name}"]
    assert svc["build"] == "." and svc["image"] == "touchpoint:dev"
    env = _environment(svc)
    assert env["TOUCHPOINT_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["TOUCHPOINT_HOST"] == "0.0.0.0"
    port = str(env["TOUCHPOINT_PORT"])
    assert port in svc["healthcheck"]["test"][-1] and "/healthz" in svc["healthcheck"]["test"][-1]
    assert any(str(p).endswith(f":{port}") for p in svc["ports"])
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert env["OTEL_SERVICE_NAME"]


def test_setup_jobs_wait_for_healthy_infrastructure(compose):
    services = compose["services"]
    assert _depends_on(services["migrate"])["postgres"]["condition"] == "service_healthy"
    assert _depends_on(services["topics-init"])["kafka"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["python", "-m", "shared.cli", "migrate"]
    assert services["topics-init"]["command"] == ["python", "-m", "shared.cli", "create-topics"]


def test_kafka_does_not_create_topics_on_demand(compose):
    env = _environment(compose["services"]["kafka"])
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"


def test_touchpoint_variables_are_real_settings(compose):
    unknown = []
    for name, svc in compose["services"].items():
        fields = _settings_class(name).model_fields
        for var in _environment(svc):
            if var.startswith(ENV_PREFIX) and var[len(ENV_PREFIX):].lower() not in fields:
                unknown.append(f"{name}: {var}")
    assert not unknown, f"TOUCHPOINT_* variables no settings class reads: {unknown}"


def _host_config_file(svc: dict, service_name: str) -> Path:
    """The file on the host behind the service's TOUCHPOINT_<SERVICE>_CONFIG, through its read-only mount."""
    config_path = Path(_environment(svc)[f"TOUCHPOINT_{service_name.upper()}_CONFIG"])
    mounts = [m.split(":") for m in svc["volumes"]]
    ((source, target, mode),) = [m for m in mounts if config_path.is_relative_to(m[1])]
    assert mode == "ro"
    # A directory, not the file: an editor's save-by-rename would leave a single-file bind mount on the old inode.
    assert (ROOT / source).is_dir()
    return ROOT / source / config_path.relative_to(target)


def _published_host_port(svc: dict, container_port: str) -> int:
    (host_port,) = [str(p).rsplit(":", 2)[-2] for p in svc["ports"] if str(p).endswith(f":{container_port}")]
    return int(host_port)


@pytest.mark.parametrize("name", CONFIG_LOADERS)
def test_service_reads_the_example_config_from_a_read_only_directory_mount(compose, name):
    host_file = _host_config_file(compose["services"][name], name)
    assert host_file == ROOT / "deploy" / name / f"{name}.yaml"
    assert CONFIG_LOADERS[name](host_file).tenants


# Services whose configuration holds links to themselves: the config key and the path the links lead to.
SELF_LINKS = {"notification": ("answer_link_base", "/v1/answers"), "feedback": ("survey_link_base", "/v1/surveys")}


@pytest.mark.parametrize("name", SELF_LINKS)
def test_links_in_the_example_config_point_at_the_published_port(compose, name):
    svc = compose["services"][name]
    key, path = SELF_LINKS[name]
    port = _published_host_port(svc, _environment(svc)["TOUCHPOINT_PORT"])
    config = CONFIG_LOADERS[name](_host_config_file(svc, name))
    bases = {getattr(t, key) for t in config.tenants.values() if getattr(t, key)}
    assert bases
    for base in bases:
        url = urlsplit(base)
        assert (url.hostname, url.port, url.path.rstrip("/")) == ("localhost", port, path), base


def test_notification_mails_go_to_the_mail_catcher(compose):
    services = compose["services"]
    env = _environment(services["notification"])
    catcher = services[env["TOUCHPOINT_SMTP_HOST"]]
    assert catcher["image"].startswith("axllent/mailpit:")
    assert _published_host_port(catcher, env["TOUCHPOINT_SMTP_PORT"]) == int(env["TOUCHPOINT_SMTP_PORT"])
    assert _published_host_port(catcher, "8025") == 8025  # the web UI
    assert _depends_on(services["notification"])[env["TOUCHPOINT_SMTP_HOST"]]["condition"] == "service_healthy"


@pytest.mark.parametrize(("name", "variable"), [("notification", "TOUCHPOINT_ANSWER_SECRET"),
                                               ("feedback", "TOUCHPOINT_SURVEY_SECRET")])
def test_link_secret_comes_from_the_host_environment_with_a_dev_default(compose, name, variable):
    value = _environment(compose["services"][name])[variable]
    assert re.fullmatch(rf"\$\{{{variable}:-[^}}]+\}}", value), value


def test_collector_config_exists_and_exports_to_jaeger(compose):
    mounts = compose["services"]["otel-collector"]["volumes"]
    source = next(m.split(":", 1)[0] for m in mounts if "collector.yaml" in m)
    config = yaml.safe_load((ROOT / source).read_text())
    exporters = config["service"]["pipelines"]["traces"]["exporters"]
    assert any(config["exporters"][e]["endpoint"] == "jaeger:4317" for e in exporters)
