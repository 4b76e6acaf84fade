import copy
import json
import os
import textwrap
from datetime import time
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from services.notification.config import (ConfigError, ConfigSource, NotificationConfig, TenantConfig, TriggerConfig,
                                          load_config, parse_config)
from services.notification.domain.model import Candidate, CapRule, QuietHours

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).resolve().parents[3] / "deploy" / "notification" / "notification.yaml"

MINIMAL = {
    "answer_link_base": "https://example.test/v1/answers",
    "triggers": {"follow_up": {"on": "touchpoint.case.resolved.v1", "purpose": "service", "topic": "case_updates",
                               "answer": "solved"}},
    "templates": {"follow_up": {
        "de": {"subject": "Gelöst?", "body": "Hallo $name: $yes_link / $no_link"},
        "en": {"subject": "Solved?", "body": "Hello $name: $yes_link / $no_link"}}},
}


DROP = object()


def config(**changes) -> dict:
    """A valid one-tenant configuration with ``changes`` applied to the tenant (``a__b`` reaches into ``a``;
    DROP removes the key)."""
    tenant = copy.deepcopy(MINIMAL)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = tenant
        for key in parents:
            target = target.setdefault(key, {})
        if value is DROP:
            target.pop(last)
        else:
            target[last] = value
    return {"tenants": {"default": tenant}}


def problems(data: dict | str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(data) if isinstance(data, str) else data)
    return str(caught.value)


# ---- the shipped example -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> TenantConfig:
    return load_config(SHIPPED).tenant("default")


def test_shipped_example_loads_with_every_trigger(shipped):
    assert set(load_config(SHIPPED).tenants) == {"default"}
    assert list(shipped.triggers) == ["case_follow_up", "shipment_delayed", "case_stale", "sla_breached",
                                      "survey_invitation", "accessories_offer"]
    assert (shipped.version, shipped.languages, shipped.default_language) == (1, ["de", "en"], "en")
    assert (shipped.default_time_zone, shipped.company) == ("Europe/Berlin", "Touchpoint")
    assert shipped.answer_link_base == "http://localhost:8005/v1/answers"
    assert shipped.answer_ttl_s == 604800


def test_shipped_caps_and_quiet_hours(shipped):
    assert shipped.cap_rules() == [CapRule("daily", 2, "calendar_day", 1), CapRule("weekly", 5, "rolling", 7),
                                   CapRule("monthly", 12, "rolling", 30)]
    assert shipped.quiet_hours() == QuietHours(start=time(21), end=time(8))


def test_shipped_follow_up(shipped):
    [(name, trigger)] = shipped.triggers_for("touchpoint.case.resolved.v1")
    assert name == "case_follow_up"
    assert (trigger.delay_s, trigger.weekend_to, trigger.channel, trigger.answer) == (86400, time(9), "event",
                                                                                       "solved")
    assert trigger.whatsapp_template == "case_follow_up_v1"
    assert not trigger.transactional and not trigger.is_marketing


def test_shipped_shipment_delay_stale_case_and_sla_breach(shipped):
    [(_, delayed)] = shipped.triggers_for("touchpoint.shipment.delayed.v1")
    assert delayed.transactional and delayed.digest_s == 3600
    assert (delayed.throttle.max, delayed.throttle.window_s) == (3, 86400)
    [(stale_name, stale)] = shipped.triggers_for("case_stale")
    assert (stale_name, stale.stale_after_days) == ("case_stale", 3)
    [(_, breached)] = shipped.triggers_for("touchpoint.routing.sla_breached.v1")
    assert breached.transactional and breached.purpose == "service"


def test_shipped_marketing_trigger(shipped):
    [(name, _)] = shipped.triggers_for("touchpoint.shipment.delivered.v1")
    candidate = shipped.candidate(name, "sms")
    assert (candidate.purpose, candidate.marketing, candidate.transactional) == ("marketing", True, False)
    assert candidate.channels == ("email", "sms", "whatsapp", "webhook")     # its own channel, not the event's


def test_shipped_german_templates_are_written_with_umlauts(shipped):
    assert shipped.template("case_follow_up", "de").subject == "Ist Ihr Anliegen gelöst?"
    assert "verzögert" in shipped.template("shipment_delayed", "de").body
    assert "Zubehör" in shipped.template("accessories_offer", "de").subject
    german = " ".join(t["de"].body for t in shipped.templates.values())
    assert not any(spelling in german for spelling in ("geloest", "verzoegert", "fuer", "Zubehoer"))


def test_shipped_example_reads_as_json_too(tmp_path, shipped):
    path = tmp_path / "notification.json"
    path.write_text(json.dumps(load_config(SHIPPED).model_dump(mode="json")))
    assert load_config(path).tenant("default") == shipped


# ---- candidates and lookups --------------------------------------------------------------------------------

def test_candidate_puts_the_event_channel_first(shipped):
    candidate = shipped.triggers["case_follow_up"].candidate("case_follow_up", "whatsapp", ["email", "sms"])
    assert candidate == Candidate(trigger="case_follow_up", purpose="service", topic="case_updates",
                                  channels=("whatsapp", "email", "sms"), critical=False, transactional=False,
                                  marketing=False, whatsapp_template="case_follow_up_v1", ignore_quiet_hours=False)


@pytest.mark.parametrize("first", [None, "phone", "chat", "email"])
def test_candidate_without_a_usable_event_channel_uses_the_tenant_order(shipped, first):
    assert shipped.candidate("case_follow_up", first).channels == ("email", "sms", "whatsapp", "webhook")


def test_a_named_channel_comes_first_whatever_the_event():
    trigger = TriggerConfig(on="touchpoint.case.resolved.v1", purpose="service", topic="t", channel="sms")
    assert trigger.candidate("t", "whatsapp", ["email", "sms"]).channels == ("sms", "email")


def test_marketing_purpose_implies_marketing_and_flags_are_copied():
    trigger = TriggerConfig(on="x.v1", purpose="marketing", topic="offers", ignore_quiet_hours=True)
    candidate = trigger.candidate("offer", None, ["email"])
    assert (candidate.marketing, candidate.ignore_quiet_hours, candidate.critical) == (True, True, False)
    survey = TriggerConfig(on="x.v1", purpose="surveys", topic="nps", marketing=True)
    assert survey.candidate("nps", None, ["email"]).marketing is True


def test_disabled_triggers_do_not_fire():
    data = config(triggers__follow_up__enabled=False)
    assert parse_config(data).tenant("default").triggers_for("touchpoint.case.resolved.v1") == []


def test_tenants_without_a_section_use_default_else_the_built_in():
    loaded = parse_config({"tenants": {"default": MINIMAL, "acme": {**MINIMAL, "version": 7}}})
    assert loaded.tenant("acme").version == 7
    assert loaded.tenant("globex") is loaded.tenants["default"]
    built_in = parse_config({"tenants": {}}).tenant("globex")
    assert built_in == load_config(None).tenant("globex") == TenantConfig()
    assert built_in.triggers == {} and built_in.quiet_hours() == QuietHours(time(21), time(8))
    assert [rule.name for rule in built_in.cap_rules()] == ["daily", "weekly", "monthly"]


def test_language_choice_uses_the_templated_languages(shipped):
    assert [shipped.language_for(p) for p in ("de", "de-AT", "fr", None)] == ["de", "de", "en", "en"]


def test_quiet_hours_can_be_switched_off():
    assert parse_config(config(default_quiet_hours=None)).tenant("x").quiet_hours() is None


def test_on_is_a_key_not_a_boolean_whatever_the_yaml_loader():
    text = SHIPPED.read_text(encoding="utf-8")
    via_yaml11 = parse_config(yaml.safe_load(text))     # PyYAML's own loader reads `on:` as True
    assert via_yaml11 == load_config(SHIPPED)


# ---- validation: every problem names its path ----------------------------------------------------------------

def test_unknown_keys_are_named():
    message = problems(config(triggers__follow_up__dealy_s=5, timezone="UTC"))
    assert "tenants.default.triggers.follow_up.dealy_s: Extra inputs are not permitted" in message
    assert "tenants.default.timezone: Extra inputs are not permitted" in message


def test_unknown_channels_are_named():
    message = problems(config(channels=["email", "fax"], triggers__follow_up__channel="pigeon"))
    assert "tenants.default.channels[1]:" in message
    assert "tenants.default.triggers.follow_up.channel:" in message


def test_a_channel_listed_twice_is_named():
    assert "tenants.default.channels: listed twice: sms" in problems(config(channels=["sms", "email", "sms"]))


def test_a_missing_language_template_is_named():
    message = problems(config(templates__follow_up__de=DROP))
    assert "tenants.default.templates.follow_up.de: missing template for language 'de'" in message


def test_a_trigger_without_templates_and_templates_without_trigger_are_named():
    data = config(templates__other=MINIMAL["templates"]["follow_up"])
    data["tenants"]["default"]["triggers"]["stale"] = {"on": "case_stale", "stale_after_days": 2,
                                                       "purpose": "service", "topic": "case_updates"}
    message = problems(data)
    assert "tenants.default.templates.stale: missing: trigger 'stale' needs a template in each of de, en" in message
    assert "tenants.default.templates.other: no trigger named 'other'" in message


def test_a_template_in_an_unlisted_language_is_named():
    message = problems(config(templates__follow_up__fr={"subject": "Résolu ?", "body": "$yes_link $no_link"}))
    assert "tenants.default.templates.follow_up.fr: language 'fr' is not one of languages (de, en)" in message


def test_unknown_and_malformed_placeholders_are_named():
    message = problems(config(templates__follow_up__en={"subject": "Hi $nmae", "body": "$yes_link $no_link $5"}))
    assert "tenants.default.templates.follow_up.en.subject: unknown placeholder $nmae (known: case_id," in message
    assert "tenants.default.templates.follow_up.en.body: invalid placeholder at character 20" in message


def test_attribute_access_is_not_a_placeholder():
    message = problems(config(templates__follow_up__en={"subject": "${name.__class__}",
                                                         "body": "$yes_link $no_link"}))
    assert "tenants.default.templates.follow_up.en.subject: invalid placeholder at character 1" in message


def test_answer_links_belong_exactly_to_triggers_with_an_answer():
    message = problems(config(templates__follow_up__de={"subject": "Gelöst?", "body": "Hallo $name"}))
    assert ("tenants.default.templates.follow_up.de.body: trigger 'follow_up' asks for an answer: the body "
            "needs $yes_link and $no_link") in message
    message = problems(config(triggers__follow_up__answer=DROP))
    assert "tenants.default.templates.follow_up.de.body: uses $no_link, but trigger 'follow_up' has no answer" \
        in message
    message = problems(config(answer_link_base=DROP))
    assert "tenants.default.answer_link_base: required: trigger 'follow_up' carries answer links" in message


def test_a_subject_is_required_only_where_email_is_possible():
    no_subject = {"body": "$yes_link $no_link"}
    message = problems(config(templates__follow_up__en=no_subject))
    assert "tenants.default.templates.follow_up.en.subject: required: trigger 'follow_up' can send e-mail" in message
    sms_only = config(channels=["sms"], triggers__follow_up__channel="sms", templates__follow_up__en=no_subject,
                      templates__follow_up__de=no_subject)
    assert parse_config(sms_only).tenant("default").template("follow_up", "en").subject is None


def test_cap_windows_longer_than_30_days_are_named():
    message = problems(config(caps=[{"name": "daily", "max": 2, "window": "calendar_day"},
                                    {"name": "quarterly", "max": 20, "window": "rolling", "days": 90}]))
    assert "tenants.default.caps[1].days: at most 30 days" in message
    message = problems(config(caps=[{"name": "week", "max": 4, "window": "calendar_week", "days": 2},
                                    {"name": "week", "max": 4, "window": "fortnight"}]))
    assert "tenants.default.caps[0].days: does not apply to calendar_week" in message
    assert "tenants.default.caps[1].window:" in message


def test_duplicate_cap_names_are_named():
    rule = {"name": "daily", "max": 2, "window": "calendar_day"}
    assert "tenants.default.caps: listed twice: daily" in problems(config(caps=[rule, rule]))


@pytest.mark.parametrize("value", ["25:00", "9:00", "09:60", "noon", ""])
def test_bad_times_of_day_are_named(value):
    message = problems(config(triggers__follow_up__weekend_to=value))
    assert f"tenants.default.triggers.follow_up.weekend_to: expected a time \"HH:MM\" between 00:00 and 23:59, " \
           f"got {value!r}" in message


def test_an_unquoted_time_read_as_a_number_gets_a_hint():
    text = yaml.safe_dump(config()).replace("tenants:\n  default:\n", "tenants:\n  default:\n"
                                            "    default_quiet_hours: {start: 21:00, end: \"08:00\"}\n", 1)
    message = problems(text)
    assert "tenants.default.default_quiet_hours.start: expected a time \"HH:MM\" in quotes" in message


@pytest.mark.parametrize("zone", ["Europe/Berln", "CET+1", "../etc/passwd", ""])
def test_bad_time_zones_are_named(zone):
    message = problems(config(default_time_zone=zone))
    assert f"tenants.default.default_time_zone: unknown time zone {zone!r}" in message


def test_default_language_must_be_templated():
    message = problems(config(default_language="fr"))
    assert "tenants.default.default_language: 'fr' is not one of languages (de, en)" in message


def test_stale_after_days_belongs_to_case_stale_only():
    message = problems(config(triggers__follow_up__stale_after_days=3))
    assert "tenants.default.triggers.follow_up.stale_after_days: only for on: case_stale" in message
    message = problems(config(triggers__follow_up__on="case_stale"))
    assert "tenants.default.triggers.follow_up.stale_after_days: required for on: case_stale" in message


def test_marketing_cannot_be_transactional_or_critical():
    message = problems(config(triggers__follow_up__purpose="marketing", triggers__follow_up__transactional=True,
                              triggers__follow_up__critical=True))
    assert "tenants.default.triggers.follow_up.transactional: a marketing message cannot be exempt" in message
    assert "tenants.default.triggers.follow_up.critical: a marketing message can always be turned off" in message


def test_every_problem_is_listed_at_once():
    data = config(channels=["fax"], caps=[{"name": "m", "max": 1, "window": "rolling", "days": 31}],
                  default_time_zone="Mars/Base")
    lines = problems(data).splitlines()
    assert len(lines) == 4                                 # the heading and one line per problem
    assert lines[0] == "notification config <notification config> is invalid:"


def test_unreadable_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML at line 1"):
        load_config(bad)
    bad_json = tmp_path / "notification.json"
    bad_json.write_text("{\"tenants\": ")
    with pytest.raises(ConfigError, match="not valid JSON at line 1"):
        load_config(bad_json)
    with pytest.raises(ConfigError, match="found an empty file"):
        parse_config("")


def test_raw_data_validation_raises_pydantic_errors():
    with pytest.raises(ValidationError):
        NotificationConfig.model_validate({"tenants": {"default": {"channels": ["fax"]}}})


# ---- reloading ---------------------------------------------------------------------------------------------

def write(path: Path, data: dict | str, mtime: int) -> None:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    os.utime(path, (mtime, mtime))


def versioned(version: int) -> dict:
    return config(version=version)


def test_source_reloads_when_the_file_changes(tmp_path):
    path = tmp_path / "notification.yaml"
    write(path, versioned(1), 1_000_000)
    source = ConfigSource(path)
    first = source.current()
    assert source.tenant("acme").version == 1
    assert source.current() is first                      # unchanged file: not re-read
    write(path, versioned(2), 1_000_010)
    assert source.tenant("acme").version == 2
    assert source.last_error is None


def test_source_keeps_the_previous_config_on_a_bad_file_until_fixed(tmp_path):
    path = tmp_path / "notification.yaml"
    write(path, versioned(1), 1_000_000)
    source = ConfigSource(path)
    write(path, config(version=2, templates__follow_up__en={"subject": "$nmae", "body": "$yes_link $no_link"}),
          1_000_010)
    assert source.tenant("default").version == 1
    assert "tenants.default.templates.follow_up.en.subject: unknown placeholder $nmae" in source.last_error
    assert source.tenant("default").version == 1           # the same bad file is not re-read
    path.unlink()
    assert source.tenant("default").version == 1
    assert "cannot read" in source.last_error
    write(path, versioned(3), 1_000_020)
    assert source.tenant("default").version == 3
    assert source.last_error is None


def test_source_refuses_to_start_on_a_bad_file(tmp_path):
    path = tmp_path / "notification.yaml"
    write(path, config(channels=["fax"]), 1_000_000)
    with pytest.raises(ConfigError, match=r"tenants\.default\.channels\[0\]"):
        ConfigSource(path)
    with pytest.raises(ConfigError, match="cannot read"):
        ConfigSource(tmp_path / "absent.yaml")


def test_source_without_a_path_serves_the_built_in_defaults():
    source = ConfigSource(None)
    assert source.tenant("acme") == TenantConfig()
    assert source.last_error is None
