import copy
import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from services.feedback.config import (CALL, CASE_RESOLVED, CONVERSATION_RESOLVED, ConfigError, ConfigSource,
                                      FeedbackConfig, TenantConfig, load_config, parse_config)
from services.feedback.domain.fatigue import FatigueRules
from services.feedback.domain.surveys import Question, Survey, validate_answers

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).resolve().parents[3] / "deploy" / "feedback" / "feedback.yaml"

MINIMAL = {
    "surveys": {"csat": {
        "title": {"de": "Ihre Meinung", "en": "Your opinion"},
        "questions": [{"id": "csat", "kind": "csat", "text": {"de": "Wie zufrieden?", "en": "How satisfied?"}},
                      {"id": "reason", "kind": "choice", "required": False, "text": {"de": "Warum?", "en": "Why?"},
                       "choices": [{"id": "price", "text": {"de": "Preis", "en": "Price"}}]}]}},
    "triggers": {"case_resolved": {"on": "touchpoint.case.resolved.v1", "survey": "csat"}},
}

DROP = object()


def config(**changes) -> dict:
    """A valid one-tenant configuration with ``changes`` applied to the tenant (``a__b`` reaches into ``a``, a
    number into a list; DROP removes the key)."""
    tenant = copy.deepcopy(MINIMAL)
    for dotted, value in changes.items():
        *parents, last = [int(part) if part.isdigit() else part for part in dotted.split("__")]
        target = tenant
        for key in parents:
            target = target[key] if isinstance(key, int) else target.setdefault(key, {})
        if value is DROP:
            target.pop(last)
        else:
            target[last] = value
    return {"tenants": {"default": tenant}}


def problems(data: dict | str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(data) if isinstance(data, str) else data)
    return str(caught.value)


# ---- the shipped example -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> TenantConfig:
    return load_config(SHIPPED).tenant("default")


def test_shipped_example_loads_with_every_setting(shipped):
    assert set(load_config(SHIPPED).tenants) == {"default"}
    assert (shipped.version, shipped.languages, shipped.default_language) == (1, ["de", "en"], "en")
    assert (shipped.survey_link_base, shipped.token_ttl_s) == ("http://localhost:8006/v1/surveys", 1_209_600)
    follow_up = shipped.detractor_follow_up
    assert (follow_up.sla_s, follow_up.priority, follow_up.resurvey, follow_up.resurvey_delay_s) == (
        172_800, 10, True, 86_400)
    assert (shipped.product_alert.threshold, shipped.product_alert.min_count) == (2.0, 5)
    assert list(shipped.surveys) == ["csat_after_case", "nps_relationship", "ces_after_call", "service_experience"]


def test_shipped_triggers(shipped):
    [(name, case)] = shipped.triggers_for(CASE_RESOLVED)
    assert (name, case.survey, case.delay_s, case.sampling_pct) == ("case_resolved", "csat_after_case", 86_400, 100)
    [(name, conversation)] = shipped.triggers_for(CONVERSATION_RESOLVED)
    assert (name, conversation.survey, conversation.sampling_pct) == ("conversation_resolved", "nps_relationship",
                                                                      50)
    [(name, call)] = shipped.triggers_for(CALL)
    assert (name, call.survey, call.delay_s) == ("after_call", "ces_after_call", 3600)
    assert shipped.triggers_for("touchpoint.case.opened.v1") == []


def test_shipped_surveys_have_their_metric_first(shipped):
    primaries = {survey_id: shipped.survey(survey_id).primary().kind for survey_id in shipped.surveys}
    assert primaries == {"csat_after_case": "csat", "nps_relationship": "nps", "ces_after_call": "ces",
                         "service_experience": "csat"}
    assert shipped.recontact_days("csat_after_case") == 30
    assert shipped.recontact_days("service_experience") == 0


def test_shipped_multi_question_survey_is_a_domain_survey(shipped):
    survey = shipped.survey("service_experience")
    assert isinstance(survey, Survey) and survey.version == 1
    assert [(q.id, q.kind, q.required) for q in survey.questions] == [
        ("csat", "csat", True), ("topic", "choice", True), ("friendliness", "scale", True),
        ("effort", "ces", False), ("comment", "text", False)]
    assert survey.questions[2].bounds() == (1, 10)
    assert survey.questions[1].choices == ("order", "return", "invoice", "other")
    assert survey.questions[1].choice_label("return", "de") == "Rücksendung oder Erstattung"
    answers = {"csat": "4", "topic": "order", "friendliness": "9", "comment": "Alles bestens."}
    assert validate_answers(survey, answers) == {"csat": 4, "topic": "order", "friendliness": 9,
                                                 "comment": "Alles bestens."}


def test_shipped_wording_is_polite_german_with_umlauts_and_english(shipped):
    ces_de = shipped.survey("ces_after_call").questions[0].text["de"]
    ces_en = shipped.survey("ces_after_call").questions[0].text["en"]
    assert ces_de.startswith("Touchpoint hat es mir leicht gemacht, mein Anliegen zu erledigen.")
    assert ces_en.startswith("Touchpoint made it easy for me to handle my request.")
    assert shipped.survey("nps_relationship").title == {"de": "Würden Sie uns weiterempfehlen?",
                                                        "en": "Would you recommend us?"}
    german = SHIPPED.read_text(encoding="utf-8")
    assert "Sie " in german and "überhaupt" in german and "Möchten" in german
    assert not any(spelling in german for spelling in ("moechten", "Wuerden", "ueberhaupt", "aeusserst", "fuer "))


def test_shipped_fatigue_rules(shipped):
    assert shipped.fatigue_rules() == FatigueRules(min_days_between=7, duplicate_window_h=12, sampling_pct=100)
    assert shipped.fatigue_rules("conversation_resolved").sampling_pct == 50
    with pytest.raises(KeyError):
        shipped.fatigue_rules("no_such_trigger")


def test_shipped_example_reads_as_json_too(tmp_path, shipped):
    path = tmp_path / "feedback.json"
    path.write_text(json.dumps(load_config(SHIPPED).model_dump(mode="json")))
    assert load_config(path).tenant("default") == shipped


def test_on_is_a_key_not_a_boolean_whatever_the_yaml_loader():
    text = SHIPPED.read_text(encoding="utf-8")
    assert parse_config(yaml.safe_load(text)) == load_config(SHIPPED)     # PyYAML's own loader reads `on` as True


# ---- lookups -------------------------------------------------------------------------------------------------

def test_tenants_without_a_section_use_default_else_the_built_in():
    loaded = parse_config({"tenants": {"default": MINIMAL, "acme": {**MINIMAL, "version": 7}}})
    assert loaded.tenant("acme").version == 7
    assert loaded.tenant("globex") is loaded.tenants["default"]
    built_in = parse_config({"tenants": {}}).tenant("globex")
    assert built_in == load_config(None).tenant("globex") == TenantConfig()
    assert built_in.surveys == {} and built_in.triggers == {}
    assert built_in.fatigue_rules() == FatigueRules()


def test_defaults_of_a_minimal_tenant():
    tenant = parse_config(config()).tenant("default")
    trigger = tenant.triggers["case_resolved"]
    assert (trigger.delay_s, trigger.sampling_pct, trigger.enabled) == (86_400, 100, True)
    survey = tenant.survey("csat")
    assert survey == Survey(id="csat", version=1, title={"de": "Ihre Meinung", "en": "Your opinion"}, questions=(
        Question(id="csat", kind="csat", text={"de": "Wie zufrieden?", "en": "How satisfied?"}),
        Question(id="reason", kind="choice", text={"de": "Warum?", "en": "Why?"}, required=False,
                 choices=("price",), choice_text={"price": {"de": "Preis", "en": "Price"}})))
    with pytest.raises(KeyError):
        tenant.survey("nps")


def test_disabled_triggers_do_not_fire():
    tenant = parse_config(config(triggers__case_resolved__enabled=False)).tenant("default")
    assert tenant.triggers_for(CASE_RESOLVED) == []


def test_language_choice():
    tenant = parse_config(config()).tenant("default")
    assert [tenant.language_for(p) for p in ("de", "DE-at", "en-GB", "fr", "", None)] == [
        "de", "de", "en", "en", "en", "en"]


# ---- validation: every problem names its path ----------------------------------------------------------------

def test_unknown_keys_are_named():
    message = problems(config(triggers__case_resolved__dealy_s=5, fatgiue={}, surveys__csat__questions__0__hint="x"))
    assert "tenants.default.triggers.case_resolved.dealy_s: Extra inputs are not permitted" in message
    assert "tenants.default.fatgiue: Extra inputs are not permitted" in message
    assert "tenants.default.surveys.csat.questions[0].hint: Extra inputs are not permitted" in message


def test_a_trigger_naming_an_unknown_survey_is_named():
    message = problems(config(triggers__case_resolved__survey="nsp"))
    assert "tenants.default.triggers.case_resolved.survey: unknown survey 'nsp' (known: csat)" in message


def test_an_unknown_trigger_source_is_named():
    message = problems(config(triggers__case_resolved__on="touchpoint.case.reslved.v1"))
    assert "tenants.default.triggers.case_resolved.on: Input should be 'touchpoint.case.resolved.v1'" in message


def test_missing_wording_is_named_for_titles_questions_and_choices():
    message = problems(config(surveys__csat__title={"en": "Your opinion"},
                              surveys__csat__questions__0__text={"de": "Wie zufrieden?"},
                              surveys__csat__questions__1__choices=[{"id": "price", "text": {"en": "Price"}}]))
    assert "tenants.default.surveys.csat.title: missing wording for language 'de'" in message
    assert "tenants.default.surveys.csat.questions[0].text: missing wording for language 'en'" in message
    assert "tenants.default.surveys.csat.questions[1].choices[0].text: missing wording for language 'de'" in message


def test_wording_in_an_unlisted_language_is_named():
    message = problems(config(surveys__csat__title={"de": "Ihre Meinung", "en": "Your opinion", "fr": "Votre avis"}))
    assert "tenants.default.surveys.csat.title.fr: language 'fr' is not one of languages (de, en)" in message


def test_empty_wording_is_named():
    message = problems(config(surveys__csat__title={"de": "", "en": "Your opinion"}))
    assert "tenants.default.surveys.csat.title.de: String should have at least 1 character" in message


def test_a_bad_kind_is_named():
    message = problems(config(surveys__csat__questions__0__kind="stars"))
    assert "tenants.default.surveys.csat.questions[0].kind: Input should be 'nps', 'csat', 'ces'" in message


@pytest.mark.parametrize("pct", [-1, 100.5, 1000])
def test_sampling_outside_0_to_100_is_named(pct):
    message = problems(config(triggers__case_resolved__sampling_pct=pct))
    assert "tenants.default.triggers.case_resolved.sampling_pct: Input should be" in message


def test_a_scale_without_min_and_max_is_named():
    scale = {"id": "stars", "kind": "scale", "text": {"de": "Sterne", "en": "Stars"}}
    message = problems(config(surveys__csat__questions=[scale]))
    assert "tenants.default.surveys.csat.questions[0].min: required for kind scale" in message
    assert "tenants.default.surveys.csat.questions[0].max: required for kind scale" in message
    message = problems(config(surveys__csat__questions=[{**scale, "min": 5, "max": 1}]))
    assert "tenants.default.surveys.csat.questions[0].max: must be greater than min (5), got 1" in message


def test_question_settings_for_other_kinds_are_named():
    message = problems(config(surveys__csat__questions__0__min=1, surveys__csat__questions__0__max_length=10,
                              surveys__csat__questions__1__choices=[]))
    assert "tenants.default.surveys.csat.questions[0].min: only for kind scale" in message
    assert "tenants.default.surveys.csat.questions[0].max_length: only for kind text" in message
    assert "tenants.default.surveys.csat.questions[1].choices: required for kind choice: at least one" in message


def test_duplicate_question_ids_and_choices_are_named():
    question = MINIMAL["surveys"]["csat"]["questions"][0]
    choice = {"id": "price", "text": {"de": "Preis", "en": "Price"}}
    message = problems(config(surveys__csat__questions=[question, question],
                              triggers=DROP, surveys__other={"title": {"de": "A", "en": "A"}, "questions": [
                                  {"id": "why", "kind": "choice", "text": {"de": "W", "en": "W"},
                                   "choices": [choice, choice]}]}))
    assert "tenants.default.surveys.csat.questions[1].id: 'csat' listed twice" in message
    assert "tenants.default.surveys.other.questions[0].choices: listed twice: price" in message


def test_a_survey_needs_questions():
    message = problems(config(surveys__csat__questions=[]))
    assert "tenants.default.surveys.csat.questions: List should have at least 1 item" in message


def test_languages_and_default_language_are_checked():
    message = problems(config(languages=["de", "en", "de"], default_language="fr"))
    assert "tenants.default.languages: listed twice: de" in message
    assert "tenants.default.default_language: 'fr' is not one of languages (de, en, de)" in message


@pytest.mark.parametrize("field, value", [("token_ttl_s", 0), ("survey_link_base", "ftp://x"),
                                          ("fatigue__min_days_between", -1), ("fatigue__duplicate_window_h", -2),
                                          ("detractor_follow_up__sla_s", 0), ("product_alert__threshold", 6),
                                          ("product_alert__min_count", 0)])
def test_out_of_range_settings_are_named(field, value):
    assert f"tenants.default.{field.replace('__', '.')}:" in problems(config(**{field: value}))


def test_every_problem_is_listed_at_once():
    data = config(triggers__case_resolved__sampling_pct=101, surveys__csat__questions__0__kind="stars",
                  fatigue={"min_days": 7})
    lines = problems(data).splitlines()
    assert lines[0] == "feedback config <feedback config> is invalid:"
    assert len(lines) == 4                                 # the heading and one line per problem
    # Cross-checks (surveys named by triggers, wording) run once every field is valid, and list all they find.
    data = config(triggers__case_resolved__survey="nope", surveys__csat__title={"en": "Your opinion"},
                  surveys__csat__questions__0__text={"de": "Wie zufrieden?"})
    assert len(problems(data).splitlines()) == 4


def test_unreadable_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML at line 1"):
        load_config(bad)
    bad_json = tmp_path / "feedback.json"
    bad_json.write_text("{\"tenants\": ")
    with pytest.raises(ConfigError, match="not valid JSON at line 1"):
        load_config(bad_json)
    with pytest.raises(ConfigError, match="found an empty file"):
        parse_config("")
    with pytest.raises(ConfigError, match="found a list"):
        parse_config("- tenants")


def test_raw_data_validation_raises_pydantic_errors():
    with pytest.raises(ValidationError):
        FeedbackConfig.model_validate({"tenants": {"default": {"languages": []}}})


# ---- reloading -----------------------------------------------------------------------------------------------

def write(path: Path, data: dict, mtime: int) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    os.utime(path, (mtime, mtime))


def test_source_reloads_and_keeps_the_previous_config_on_a_bad_file(tmp_path):
    path = tmp_path / "feedback.yaml"
    write(path, config(version=1), 1_000_000)
    source = ConfigSource(path)
    assert source.tenant("acme").version == 1
    write(path, config(version=2, triggers__case_resolved__survey="nope"), 1_000_010)
    assert source.tenant("acme").version == 1
    assert "tenants.default.triggers.case_resolved.survey: unknown survey 'nope'" in source.last_error
    write(path, config(version=3), 1_000_020)
    assert source.tenant("acme").version == 3
    assert source.last_error is None


def test_source_refuses_to_start_on_a_bad_file_and_defaults_without_a_path(tmp_path):
    path = tmp_path / "feedback.yaml"
    write(path, config(triggers__case_resolved__sampling_pct=150), 1_000_000)
    with pytest.raises(ConfigError, match=r"tenants\.default\.triggers\.case_resolved\.sampling_pct"):
        ConfigSource(path)
    assert ConfigSource(None).tenant("acme") == TenantConfig()
