import json
import os
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.routing.config import ConfigError, ConfigSource, RoutingConfig, TenantConfig, load_config, parse_config
from services.routing.domain.calendar import BusinessCalendar
from services.routing.domain.workflow import AgentView, Target, Workflow, choose_agent

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).resolve().parents[3] / "deploy" / "routing" / "routing.yaml"
BERLIN = ZoneInfo("Europe/Berlin")


def task(**values) -> dict:
    return {"channel": "chat", "language": "en", "tags": [], "priority": 0, "tier": None, "sentiment": None,
            "customer_id": "c-1", "conversation_id": "conv-1", **values}


def invalid(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text))
    return str(caught.value)


# ---- the shipped example -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> RoutingConfig:
    return load_config(SHIPPED)


def test_shipped_example_has_both_tenants_with_versions(shipped):
    assert set(shipped.tenants) == {"default", "acme"}
    assert shipped.tenant("acme").version == 3
    assert shipped.tenant("default").version == 1


def test_shipped_scalars(shipped):
    acme = shipped.tenant("acme")
    assert (acme.offer_timeout_s, acme.reassign_after_s, acme.auto_accept) == (120, 900, False)
    assert (acme.routing_model, acme.ageing_s) == ("most_available", 60)
    assert (acme.continuity.window_s, acme.continuity.wait_s) == (2592000, 15)
    assert (acme.escalation.queue, acme.escalation.priority_bump) == ("supervisors", 10)
    assert shipped.tenant("default").routing_model == "least_active"
    assert shipped.tenant("default").auto_accept is True


def test_shipped_capacity_costs(shipped):
    acme = shipped.tenant("acme")
    assert [acme.cost(c) for c in ("phone", "chat", "email", "carrier-pigeon")] == [100, 20, 10, 20]
    assert acme.capacity.total == 100


def test_shipped_workflow_relaxes_and_skips(shipped):
    workflow = shipped.tenant("acme").workflow()
    billing = task(tags=["billing"], language="de")
    assert [f.name for f in workflow.filters] == ["vip", "billing-german", "angry-customers", "phone"]
    assert [t.timeout_s for t in workflow.stages(billing)] == [60, 120, None, None]
    assert workflow.current(billing, 90)[0].expression.source.startswith("skills.billing >= 1 AND")
    assert workflow.next_change_s(billing, 90) == 90
    nobody_for_billing = [AgentView("ann", "online", {"languages": ["en"], "skills": {}})]
    chosen, target = choose_agent(workflow.current(billing, 200), billing, nobody_for_billing, acme_cost(shipped),
                                  "most_available", set())
    assert (chosen.agent_id, target.queue) == ("ann", "general")
    assert workflow.stages(task(tier="gold"))[0].skip_if == "no_available_agents"
    assert workflow.stages(task(channel="email"))[0].queue == "general"


def acme_cost(config: RoutingConfig) -> int:
    return config.tenant("acme").cost("chat")


def test_shipped_sla_per_channel_and_priority(shipped):
    acme = shipped.tenant("acme")
    assert acme.sla_policy(task(channel="twitter")).name == "acme-social"
    assert acme.sla_policy(task(channel="twitter", priority=9)).name == "acme-vip"
    assert acme.sla_policy(task(channel="whatsapp")).name == "acme-messaging"
    email = acme.sla_policy(task(channel="email"))
    assert (email.name, email.first_response_s, email.warn_before_s) == ("acme-email", 14400, (3600,))
    social = acme.sla_policy(task(channel="facebook"))
    assert social.warn_before_s == (1800, 600)
    assert social.calendar == acme.calendar("office")
    default = shipped.tenant("default")
    assert default.sla_policy(task(priority=8)).calendar == BusinessCalendar.always_open()
    assert default.sla_policy(task()).name == "default-standard"


def test_shipped_calendars_have_split_shifts_and_holidays(shipped):
    office = shipped.tenant("acme").calendar("office")
    monday = datetime(2026, 3, 2, tzinfo=BERLIN)
    assert office.is_open(monday.replace(hour=12))
    assert not office.is_open(monday.replace(hour=13))            # lunch break
    assert office.is_open(monday.replace(hour=14))
    assert not office.is_open(datetime(2026, 12, 25, 10, tzinfo=BERLIN))
    start = monday.replace(hour=12)                                 # 30 min before lunch, then 30 min after it
    assert office.add(start, 3600) == monday.replace(hour=14).astimezone(timezone.utc)


def test_shipped_config_round_trips_through_its_dump(shipped):
    dumped = shipped.model_dump(by_alias=True)
    assert dumped["tenants"]["acme"]["workflow"]["filters"][0]["match"] == "tier == 'gold'"
    assert RoutingConfig.model_validate(dumped) == shipped


# ---- defaults and fallback ---------------------------------------------------------------------------------

def test_no_file_gives_built_in_defaults_for_every_tenant():
    config = load_config(None)
    tenant = config.tenant("anyone")
    assert tenant == TenantConfig()
    assert (tenant.offer_timeout_s, tenant.reassign_after_s, tenant.auto_accept) == (120, 900, False)
    assert (tenant.routing_model, tenant.ageing_s, tenant.version) == ("most_available", 60, 0)
    assert (tenant.continuity.window_s, tenant.continuity.wait_s) == (2592000, 15)
    assert (tenant.escalation.queue, tenant.escalation.priority_bump) == (None, 10)
    assert tenant.workflow() == Workflow(default_targets=(Target(queue="general"),))
    assert tenant.sla_policy(task()) is None
    assert [tenant.cost(c) for c in ("phone", "chat", "email", "fax")] == [100, 20, 10, 20]


def test_omitted_keys_take_defaults():
    tenant = parse_config("tenants: {acme: {version: 7, capacity: {cost: {chat: 30}}}}").tenant("acme")
    assert tenant.version == 7 and tenant.offer_timeout_s == 120
    assert tenant.cost("chat") == 30
    assert tenant.cost("phone") == 20                     # a replaced cost table falls back to 20


def test_unknown_tenant_falls_back_to_default_entry_then_built_in():
    with_default = parse_config("tenants: {default: {version: 2}, acme: {version: 5}}")
    assert with_default.tenant("acme").version == 5
    assert with_default.tenant("globex").version == 2
    without_default = parse_config("tenants: {acme: {version: 5}}")
    assert without_default.tenant("globex") == TenantConfig()


def test_unquoted_yaml_booleans_are_expressions():
    tenant = parse_config("tenants: {t: {sla: [{match: true, first_response_s: 60}]}}").tenant("t")
    assert tenant.sla_policy({}).first_response_s == 60
    assert tenant.sla[0].match.source == "true"


def test_json_files_are_accepted(tmp_path):
    path = tmp_path / "routing.json"
    path.write_text(json.dumps({"tenants": {"acme": {"version": 4, "routing_model": "round_robin"}}}))
    assert load_config(path).tenant("acme").routing_model == "round_robin"


# ---- errors --------------------------------------------------------------------------------------------------

def test_bad_filter_expression_names_path_and_position():
    message = invalid("""
        tenants:
          acme:
            workflow:
              filters:
                - name: billing
                  match: "tags HAS 'billing' AND"
                  targets: [{queue: billing}]
        """)
    assert "tenants.acme.workflow.filters[0].match: " in message
    assert "found end of expression at position 22" in message


def test_bad_target_expression_names_path_and_position():
    message = invalid("""
        tenants:
          acme:
            workflow:
              default_targets:
                - {queue: general}
                - {queue: general, expression: "skills.billing >= = 3"}
        """)
    assert "tenants.acme.workflow.default_targets[1].expression: " in message
    assert "unexpected character '=' at position 18" in message


def test_bad_sla_match_names_path():
    message = invalid("tenants: {acme: {sla: [{match: \"channel IN ['a'\", first_response_s: 60}]}}")
    assert "tenants.acme.sla[0].match: expected ',' or ']'" in message


def test_bad_calendars_name_path_and_reason():
    message = invalid("""
        tenants:
          acme:
            calendars:
              office: {tz: Europe/Berlinn, hours: {mon: ["09:00-17:00"]}}
              shop: {tz: UTC, hours: {mon: ["9-17"]}}
              closed: {tz: UTC, hours: {}}
              overlap: {tz: UTC, hours: {tue: ["09:00-13:00", "12:00-17:00"]}}
              holiday: {tz: UTC, hours: {mon: ["09:00-17:00"]}, holidays: ["25.12.2026"]}
        """)
    assert "tenants.acme.calendars.office: unknown time zone 'Europe/Berlinn'" in message
    assert "tenants.acme.calendars.shop: mon: expected 'HH:MM-HH:MM', got '9-17'" in message
    assert "tenants.acme.calendars.closed: the calendar has no business hours" in message
    assert "tenants.acme.calendars.overlap: tue:" in message
    assert "tenants.acme.calendars.holiday.holidays[0]:" in message


def test_unknown_calendar_reference_names_path():
    message = invalid("""
        tenants:
          acme:
            calendars: {office: {tz: UTC, hours: {mon: ["09:00-17:00"]}}}
            sla:
              - {match: "true", calendar: ofice, first_response_s: 60}
        """)
    assert "tenants.acme.sla[0].calendar: unknown calendar 'ofice' (known: office)" in message


@pytest.mark.parametrize("text, fragment", [
    ("tenants: {acme: {routing_model: fastest}}", "tenants.acme.routing_model:"),
    ("tenants: {acme: {offer_timeout: 5}}", "tenants.acme.offer_timeout: Extra inputs are not permitted"),
    ("tenants: {acme: {offer_timeout_s: 0}}", "tenants.acme.offer_timeout_s:"),
    ("tenants: {acme: {capacity: {cost: {chat: 0}}}}", "tenants.acme.capacity.cost.chat:"),
    ("tenants: {acme: {sla: [{match: 'true'}]}}", "tenants.acme.sla[0]: needs at least one of"),
    ("tenants: {acme: {workflow: {default_targets: []}}}", "tenants.acme.workflow.default_targets:"),
    ("tenants: {acme: {workflow: {filters: [{name: f, match: x, targets: []}]}}}",
     "tenants.acme.workflow.filters[0].targets:"),
    ("tenants: {acme: {workflow: {default_targets: [{queue: q, skip_if: always}]}}}",
     "tenants.acme.workflow.default_targets[0].skip_if:"),
    ("tenants: {acme: {workflow: {filters: [{name: f, match: x, targets: [{queue: a}]}, "
     "{name: f, match: y, targets: [{queue: b}]}]}}}",
     "tenants.acme.workflow.filters[1].name: duplicate filter name 'f'"),
    ("tenant: {acme: {}}", "tenant: Extra inputs are not permitted"),
    ("tenants: {acme: {version: three}}", "tenants.acme.version:"),
    ("", "expected a mapping with a 'tenants' key, found an empty file"),
    ("- acme", "expected a mapping with a 'tenants' key, found a list"),
    ("tenants: {acme: [", "not valid YAML at line 1"),
])
def test_invalid_configs_are_reported_by_path(text, fragment):
    assert fragment in invalid(text)


def test_every_problem_is_reported_at_once():
    message = invalid("tenants: {a: {routing_model: x}, b: {workflow: {filters: [{name: f, match: '(', "
                      "targets: [{queue: q}]}]}}}")
    assert "tenants.a.routing_model" in message and "tenants.b.workflow.filters[0].match" in message


def test_config_errors_are_value_errors_and_raw_validation_is_pydantic():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ValidationError) as caught:
        RoutingConfig.model_validate({"tenants": {"acme": {"workflow": {"filters": [
            {"name": "f", "match": "x ==", "targets": [{"queue": "q"}]}]}}}})
    assert isinstance(caught.value, ValueError)
    assert "at position 4" in str(caught.value)


def test_unreadable_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad_json = tmp_path / "routing.json"
    bad_json.write_text("{\"tenants\": ")
    with pytest.raises(ConfigError, match="not valid JSON at line 1"):
        load_config(bad_json)


# ---- reloading ---------------------------------------------------------------------------------------------

def write(path: Path, text: str, mtime: int) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def test_source_reloads_when_the_file_changes(tmp_path):
    path = tmp_path / "routing.yaml"
    write(path, "tenants: {acme: {version: 1}}", 1_000_000)
    source = ConfigSource(path)
    first = source.current()
    assert first.tenant("acme").version == 1
    assert source.current() is first                      # unchanged file: not re-read
    write(path, "tenants: {acme: {version: 2}}", 1_000_010)
    assert source.current().tenant("acme").version == 2
    assert source.last_error is None


def test_source_keeps_the_old_config_on_a_bad_file_until_fixed(tmp_path):
    path = tmp_path / "routing.yaml"
    write(path, "tenants: {acme: {version: 1}}", 1_000_000)
    source = ConfigSource(path)
    write(path, "tenants: {acme: {version: 2, workflow: {filters: [{name: f, match: 'a ==', "
                "targets: [{queue: q}]}]}}}", 1_000_010)
    assert source.current().tenant("acme").version == 1
    assert "tenants.acme.workflow.filters[0].match" in source.last_error
    assert "at position 4" in source.last_error
    assert source.current().tenant("acme").version == 1   # the same bad file is not re-read
    path.unlink()
    assert source.current().tenant("acme").version == 1
    assert "cannot read" in source.last_error
    write(path, "tenants: {acme: {version: 3}}", 1_000_020)
    assert source.current().tenant("acme").version == 3
    assert source.last_error is None


def test_source_refuses_to_start_on_a_bad_file(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text("tenants: {acme: {routing_model: fastest}}")
    with pytest.raises(ConfigError, match="tenants.acme.routing_model"):
        ConfigSource(path)
    with pytest.raises(ConfigError, match="cannot read"):
        ConfigSource(tmp_path / "absent.yaml")


def test_source_without_a_path_serves_defaults():
    source = ConfigSource(None)
    assert source.current().tenant("acme") == TenantConfig()
    assert source.last_error is None
