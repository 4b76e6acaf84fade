"""Static checks of deploy/k8s: each overlay renders offline, its built-in resources match the Kubernetes schemas,
and everything agrees with the topic registry, the service settings and the deployment conventions.

Rendering uses deploy/k8s/render.py (no kubectl needed; its output matched ``kubectl kustomize`` for both
overlays when written). Custom resources (Strimzi, CloudNativePG, KEDA) have no bundled schema, so their
required fields are asserted here.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from services.identity.rules import parse_rules
from services.feedback.config import parse_config as parse_feedback_config
from services.feedback.settings import FeedbackSettings
from services.notification.config import parse_config as parse_notification_config
from services.notification.settings import NotificationSettings
from services.routing.config import parse_config as parse_routing_config
from shared import topics
from shared.settings import ServiceSettings
from shared.topics import REGISTRY, TopicSpec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = ("ingestion", "identity", "timeline", "routing", "notification", "feedback")
# The oldest Kubernetes release the manifests must be valid for.
KUBERNETES_VERSION = "1.30"
CUSTOM_KINDS = {
    ("kafka.strimzi.io/v1", "Kafka"),
    ("kafka.strimzi.io/v1", "KafkaNodePool"),
    ("kafka.strimzi.io/v1", "KafkaTopic"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}
CONFIG_MAP = "touchpoint-config"
DB_CLUSTER = "touchpoint-db"
KAFKA_CLUSTER = "touchpoint"
PART_OF = {"app.kubernetes.io/part-of": "touchpoint"}
# user:password@ in a URL: a committed credential.
CREDENTIAL_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/@:]+:[^\s/@]+@", re.IGNORECASE)
SECRET_LOOKING_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|DATABASE_URL|DSN", re.IGNORECASE)
# `res.subscribe(topics.IDENTITY.name, ...)` in a service's composition root (services/<name>/main.py).
SUBSCRIPTION = re.compile(r"\.subscribe\(\s*topics\.([A-Z_]+)\.name")
# Services that read a configuration file (TOUCHPOINT_<SERVICE>_CONFIG) from a ConfigMap, with its parser.
CONFIG_PARSERS = {"identity": parse_rules, "routing": parse_routing_config,
                  "notification": parse_notification_config, "feedback": parse_feedback_config}
# Holds the notification service's answer-link secret and channel credentials; created by the operator.
NOTIFICATION_SECRET = "touchpoint-notification"
# Holds the feedback service's survey-link secret; created by the operator.
FEEDBACK_SECRET = "touchpoint-feedback"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _load_script(name: str) -> ModuleType:
    """deploy/ is not a package: load its scripts from their files."""
    spec = importlib.util.spec_from_file_location(f"deploy_k8s_{name}", K8S / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _load_script("render")
render_topics = _load_script("render_topics")
render_config_maps = _load_script("render_config_maps")


@functools.cache
def _rendered(overlay: str) -> tuple[dict, ...]:
    return tuple(render.build(K8S / "overlays" / overlay))


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture
def docs(overlay) -> tuple[dict, ...]:
    return _rendered(overlay)


def _of_kind(docs, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _one(docs, kind: str, name: str) -> dict:
    found = _of_kind(docs, kind)
    assert name in found, f"no {kind} named {name}"
    return found[name]


def _namespace(overlay: str) -> str:
    return yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())["namespace"]


def _settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{service}.settings")
    return getattr(module, f"{service.capitalize()}Settings")


def _setting_default(service: str, field: str):
    return _settings_class(service).model_fields[field].default


def _consumed_topics(service: str) -> list[TopicSpec]:
    return [t for t in REGISTRY if service in t.consumers]


def _subscribed_topics(service: str) -> list[TopicSpec]:
    """What the service really consumes. The registry leaves some reads out of ``consumers`` on purpose (routing's
    read of the identity topic, see shared/topics.py), and a topic without a trigger would never scale the service."""
    source = (ROOT / "services" / service / "main.py").read_text()
    return [getattr(topics, name) for name in SUBSCRIPTION.findall(source)]


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def _kafka_config(docs) -> dict:
    return _one(docs, "Kafka", KAFKA_CLUSTER)["spec"]["kafka"]["config"]


# --- rendering ---------------------------------------------------------------------------------------------------

def test_topic_manifest_matches_the_registry():
    committed = (K8S / "base" / "kafka-topics.yaml").read_text()
    assert committed == render_topics.render(), "stale: run .venv/bin/python deploy/k8s/render_topics.py"


def test_config_maps_are_rendered_for_every_service_with_a_config_file():
    assert set(render_config_maps.SERVICES) == set(CONFIG_PARSERS)


@pytest.mark.parametrize("service", CONFIG_PARSERS)
def test_config_map_matches_the_service_config(service):
    committed = render_config_maps.output(service).read_text()
    assert committed == render_config_maps.render(service), (
        "stale: run .venv/bin/python deploy/k8s/render_config_maps.py")


def test_offline_renderer_refuses_features_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("commonLabels: {a: b}\nresources: []\n")
    with pytest.raises(render.UnsupportedKustomization):
        render.build(tmp_path)


# --- schemas -----------------------------------------------------------------------------------------------------

def test_builtin_resources_match_the_kubernetes_schemas(docs):
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue  # no bundled schema: checked field by field below
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{where}: {err.message} at {'/'.join(map(str, err.absolute_path))}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{where}: unknown kind {doc['apiVersion']} {doc['kind']}")


def test_schema_validation_catches_unknown_fields():
    deployment = copy.deepcopy(_one(_rendered("dev"), "Deployment", "touchpoint-ingestion"))
    _container(deployment)["livenesProbe"] = {}  # a typo strict validation must reject
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_everything_lives_in_the_overlay_namespace_and_is_labelled(overlay, docs):
    namespace = _namespace(overlay)
    assert _one(docs, "Namespace", namespace)
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
        assert PART_OF.items() <= doc["metadata"].get("labels", {}).items(), doc["metadata"]["name"]


# --- workloads ---------------------------------------------------------------------------------------------------

def test_every_pod_is_hardened_and_bounded(docs):
    workloads = [d for d in docs if d["kind"] in ("Deployment", "Job")]
    assert len(workloads) == len(SERVICES) + 1
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name  # the image's user (Dockerfile)
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}.get("/tmp") in tmp_volumes, name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name} {bound}"


def test_services_run_their_module_with_health_and_readiness_probes(docs):
    for service in SERVICES:
        deployment = _one(docs, "Deployment", f"touchpoint-{service}")
        container = _container(deployment)
        port = _setting_default(service, "port")
        assert container["command"] == ["python", "-m", f"services.{service}"]
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        assert _env(container)["TOUCHPOINT_PORT"]["value"] == str(port)
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        svc = _one(docs, "Service", f"touchpoint-{service}")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert svc["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]


def test_settings_come_from_the_config_map_and_the_database_from_the_cnpg_secret(docs):
    config = _one(docs, "ConfigMap", CONFIG_MAP)["data"]
    assert config["TOUCHPOINT_HOST"] == "0.0.0.0"
    for workload in (d for d in docs if d["kind"] in ("Deployment", "Job")):
        container = workload["spec"]["template"]["spec"]["containers"][0]
        assert {"configMapRef": {"name": CONFIG_MAP}} in container["envFrom"]
        db_url = _env(container)["TOUCHPOINT_DATABASE_URL"]
        assert db_url == {"name": "TOUCHPOINT_DATABASE_URL",  # the non-owner role: row-level security applies
                          "valueFrom": {"secretKeyRef": {"name": f"{DB_CLUSTER}-runtime", "key": "uri"}}}
        if workload["kind"] == "Job":
            assert _env(container)["TOUCHPOINT_MIGRATION_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": f"{DB_CLUSTER}-app", "key": "uri"}
        settings = (_settings_class(workload["metadata"]["name"].removeprefix("touchpoint-"))
                    if workload["kind"] == "Deployment" else ServiceSettings)
        for name in [*config, *_env(container)]:
            if name.startswith("TOUCHPOINT_"):
                field = name.removeprefix("TOUCHPOINT_").lower()
                assert field in settings.model_fields, f"{workload['metadata']['name']}: {name} is no setting"


def test_no_secret_is_committed_in_plaintext(docs):
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets come from operators, never from the repo"
    for path in K8S.rglob("*"):
        if path.is_file():
            assert not CREDENTIAL_IN_URL.search(path.read_text()), f"credential in a URL in {path}"
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert not [k for k in doc["data"] if SECRET_LOOKING_NAME.search(k)], doc["metadata"]["name"]
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            literal = [n for n, e in _env(container).items() if "value" in e and SECRET_LOOKING_NAME.search(n)]
            assert not literal, f"{doc['metadata']['name']}: literal value for {literal}"


@pytest.mark.parametrize("service", CONFIG_PARSERS)
def test_service_reads_its_config_map_through_a_directory_mount(docs, service):
    deployment = _one(docs, "Deployment", f"touchpoint-{service}")
    container = _container(deployment)
    path = Path(_env(container)[f"TOUCHPOINT_{service.upper()}_CONFIG"]["value"])
    (mount,) = [m for m in container["volumeMounts"] if path.is_relative_to(m["mountPath"])]
    # subPath mounts never receive ConfigMap updates, and the service re-reads the file when it changes.
    assert mount.get("readOnly") is True and "subPath" not in mount
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    config_map = render_config_maps.config_map_name(service)
    assert volume["configMap"]["name"] == config_map
    data = _one(docs, "ConfigMap", config_map)["data"]
    key = str(path.relative_to(mount["mountPath"]))
    assert set(data) == {key}
    assert CONFIG_PARSERS[service](data[key], source=f"ConfigMap {config_map}").tenants


def _secret_fields(settings: type[ServiceSettings]) -> list[str]:
    """The service's own SecretStr settings (the database URL is checked for every workload)."""
    return [name for name, field in settings.model_fields.items()
            if name not in ServiceSettings.model_fields
            and SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))]


def test_notification_secrets_come_from_its_secret_and_only_the_answer_secret_is_required(docs):
    env = _env(_container(_one(docs, "Deployment", "touchpoint-notification")))
    secret_fields = _secret_fields(NotificationSettings)
    assert "answer_secret" in secret_fields
    for field in secret_fields:
        ref = env[f"TOUCHPOINT_{field.upper()}"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == NOTIFICATION_SECRET
        # The settings default for the answer secret is public: a pod without the real one must not start.
        assert ref.get("optional", False) is (field != "answer_secret"), field
    channel_settings = [e for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})
                        and e["valueFrom"]["secretKeyRef"]["name"] == NOTIFICATION_SECRET]
    assert {e["name"] for e in channel_settings} >= {"TOUCHPOINT_SMTP_HOST", "TOUCHPOINT_TWILIO_BASE_URL",
                                                      "TOUCHPOINT_WHATSAPP_BASE_URL"}


def test_feedback_survey_secret_is_required_from_its_secret(docs):
    env = _env(_container(_one(docs, "Deployment", "touchpoint-feedback")))
    assert _secret_fields(FeedbackSettings) == ["survey_secret"]
    # The settings default is public: a pod without the real secret must not start rather than sign with it.
    assert env["TOUCHPOINT_SURVEY_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": FEEDBACK_SECRET,
                                                                           "key": "survey-secret"}


def test_migration_job_runs_the_cli(docs):
    job = _one(docs, "Job", "touchpoint-migrate")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    assert pod["containers"][0]["command"] == ["python", "-m", "shared.cli", "migrate"]


def test_all_pods_run_the_same_image_with_the_overlay_tag(overlay, docs):
    tag = {img["name"]: img["newTag"] for img in
           yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())["images"]}["touchpoint"]
    images = {c["image"] for d in docs if d["kind"] in ("Deployment", "Job")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {f"touchpoint:{tag}"}
    base = [d for d in render.build(K8S / "base") if d["kind"] in ("Deployment", "Job")]
    assert {c["image"] for d in base for c in d["spec"]["template"]["spec"]["containers"]} == {"touchpoint:latest"}


# --- Kafka (Strimzi) ---------------------------------------------------------------------------------------------

def test_kafka_runs_in_kraft_mode_with_a_dual_role_node_pool(docs):
    kafka = _one(docs, "Kafka", KAFKA_CLUSTER)
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1"
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    assert "topicOperator" in kafka["spec"]["entityOperator"], "KafkaTopic resources need the topic operator"
    assert "replicas" not in kafka["spec"]["kafka"] and "storage" not in kafka["spec"]["kafka"]  # node pools own them
    pools = [p for p in docs if p["kind"] == "KafkaNodePool"]
    assert pools and all(p["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA_CLUSTER for p in pools)
    for pool in pools:
        assert pool["apiVersion"] == "kafka.strimzi.io/v1"
        assert set(pool["spec"]["roles"]) == {"controller", "broker"}
        assert pool["spec"]["replicas"] >= 1
        assert pool["spec"]["storage"]["type"] in ("jbod", "persistent-claim")
    config = _kafka_config(docs)
    nodes = sum(p["spec"]["replicas"] for p in pools)
    assert config["auto.create.topics.enable"] is False
    assert config["min.insync.replicas"] <= config["default.replication.factor"] <= nodes
    assert config["offsets.topic.replication.factor"] <= nodes
    assert config["transaction.state.log.min.isr"] <= config["transaction.state.log.replication.factor"] <= nodes


def test_services_bootstrap_from_the_plain_listener(docs):
    (listener,) = [lst for lst in _one(docs, "Kafka", KAFKA_CLUSTER)["spec"]["kafka"]["listeners"]
                   if lst["type"] == "internal" and not lst["tls"]]
    config = _one(docs, "ConfigMap", CONFIG_MAP)["data"]
    assert config["TOUCHPOINT_KAFKA_BOOTSTRAP_SERVERS"] == f"{KAFKA_CLUSTER}-kafka-bootstrap:{listener['port']}"


def test_every_registry_topic_and_its_dead_letter_twin_is_a_kafka_topic(docs):
    topics = _of_kind(docs, "KafkaTopic")
    expected = {}
    for spec in REGISTRY:
        expected[spec.name] = (spec.partitions, dict(spec.config))
        expected[spec.dead_letter()] = (1, {})
    assert set(topics) == set(expected)
    for name, topic in topics.items():
        assert topic["apiVersion"] == "kafka.strimzi.io/v1"
        assert DNS_SUBDOMAIN.match(name) and len(name) <= 253, f"{name} is no valid resource name"
        assert topic["spec"].get("topicName", name) == name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA_CLUSTER
        assert (topic["spec"]["partitions"], topic["spec"].get("config", {})) == expected[name], name
        assert "replicas" not in topic["spec"], "replication follows the cluster's default.replication.factor"


# --- PostgreSQL (CloudNativePG) ----------------------------------------------------------------------------------

def test_postgres_is_a_cnpg_cluster_owned_by_the_application(docs):
    cluster = _one(docs, "Cluster", DB_CLUSTER)
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["instances"] >= 1
    assert cluster["spec"]["storage"]["size"]
    assert cluster["spec"]["bootstrap"]["initdb"] == {"database": "touchpoint", "owner": "touchpoint"}


# --- autoscaling (KEDA) ------------------------------------------------------------------------------------------

def test_each_consumer_scales_on_its_topic_lag_within_its_partitions(overlay, docs):
    scaled = _of_kind(docs, "ScaledObject")
    assert set(scaled) == {f"touchpoint-{s}" for s in SERVICES}
    for service in SERVICES:
        obj = scaled[f"touchpoint-{service}"]
        spec = obj["spec"]
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        deployment = _one(docs, "Deployment", spec["scaleTargetRef"]["name"])
        assert deployment["metadata"]["name"] == f"touchpoint-{service}"
        assert "replicas" not in deployment["spec"], "the ScaledObject owns the replica count"
        consumed = _subscribed_topics(service)
        missing = {t.name for t in _consumed_topics(service)} - {t.name for t in consumed}
        assert not missing, f"{service} does not subscribe to its registry topics {missing}"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= min(t.partitions for t in consumed)
        assert sorted(t["metadata"]["topic"] for t in spec["triggers"]) == sorted(t.name for t in consumed)
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            meta = trigger["metadata"]
            # KEDA's operator connects from its own namespace: the bootstrap address must be fully qualified.
            assert meta["bootstrapServers"] == f"{KAFKA_CLUSTER}-kafka-bootstrap.{_namespace(overlay)}.svc:9092"
            assert meta["consumerGroup"] == _setting_default(service, "group_id") == f"touchpoint-{service}"
            assert int(meta["lagThreshold"]) > 0 and isinstance(meta["lagThreshold"], str)


# --- overlay differences -----------------------------------------------------------------------------------------

def test_dev_runs_one_small_replica_of_everything():
    docs = _rendered("dev")
    for obj in _of_kind(docs, "ScaledObject").values():
        assert obj["spec"]["minReplicaCount"] == obj["spec"]["maxReplicaCount"] == 1
    assert _one(docs, "Cluster", DB_CLUSTER)["spec"]["instances"] == 1
    assert _kafka_config(docs)["default.replication.factor"] == 1


def test_prod_is_highly_available_with_disruption_budgets_and_bigger_pods():
    docs, dev = _rendered("prod"), _rendered("dev")
    scaled = _of_kind(docs, "ScaledObject")
    assert scaled["touchpoint-ingestion"]["spec"]["minReplicaCount"] == 3
    assert scaled["touchpoint-timeline"]["spec"]["minReplicaCount"] == 3
    assert scaled["touchpoint-identity"]["spec"]["minReplicaCount"] == 2
    assert scaled["touchpoint-routing"]["spec"]["minReplicaCount"] == 2
    assert scaled["touchpoint-notification"]["spec"]["minReplicaCount"] == 2
    assert scaled["touchpoint-feedback"]["spec"]["minReplicaCount"] == 2
    assert _one(docs, "Cluster", DB_CLUSTER)["spec"]["instances"] == 3
    assert sum(p["spec"]["replicas"] for p in _of_kind(docs, "KafkaNodePool").values()) == 3
    assert _kafka_config(docs)["default.replication.factor"] == 3
    assert _kafka_config(docs)["min.insync.replicas"] == 2
    image = _container(_one(docs, "Deployment", "touchpoint-ingestion"))["image"]
    assert re.fullmatch(r"touchpoint:\d+\.\d+\.\d+", image), f"prod pins a release tag, not {image}"
    budgets = _of_kind(docs, "PodDisruptionBudget")
    for service in SERVICES:
        deployment = _one(docs, "Deployment", f"touchpoint-{service}")
        pdb = budgets[f"touchpoint-{service}"]["spec"]
        assert pdb["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert pdb.get("maxUnavailable") == 1
        big = _container(deployment)["resources"]["limits"]["memory"]
        small = _container(_one(dev, "Deployment", f"touchpoint-{service}"))["resources"]["limits"]["memory"]
        assert _mebibytes(big) > _mebibytes(small)
