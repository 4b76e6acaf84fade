from dataclasses import dataclass
from pathlib import Path

import pytest

from services.notification.config import load_config
from services.notification.templates import (KNOWN_PLACEHOLDERS, Rendered, RenderError, choose_language,
                                             placeholders, render, syntax_errors)

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).resolve().parents[3] / "deploy" / "notification" / "notification.yaml"


@dataclass(frozen=True)
class Text:
    subject: str | None
    body: str


def values(**given: str) -> dict[str, str]:
    """A value for every known placeholder, as the service supplies them."""
    return {name: "" for name in KNOWN_PLACEHOLDERS} | given


FOLLOW_UP_DE = Text("Ist Ihr Problem gelöst, $name?",
                    "Hallo $name,\nIhr Anliegen $case_id ist erledigt.\nJa: $yes_link\nNein: $no_link")


def test_placeholders_of_subject_and_body():
    assert placeholders(FOLLOW_UP_DE) == {"name", "case_id", "yes_link", "no_link"}
    assert placeholders(Text(None, "${order_id} costs $$5")) == {"order_id"}


def test_email_in_german_keeps_umlauts_in_subject_text_and_html():
    rendered = render(FOLLOW_UP_DE, values(name="Jürgen Müßig", case_id="C-7", yes_link="https://a/y",
                                           no_link="https://a/n"), "email")
    assert rendered.subject == "Ist Ihr Problem gelöst, Jürgen Müßig?"
    assert rendered.text == ("Hallo Jürgen Müßig,\nIhr Anliegen C-7 ist erledigt.\nJa: https://a/y\n"
                             "Nein: https://a/n")
    assert rendered.html == ('Hallo Jürgen Müßig,<br>\nIhr Anliegen C-7 ist erledigt.<br>\n'
                             'Ja: <a href="https://a/y">https://a/y</a><br>\n'
                             'Nein: <a href="https://a/n">https://a/n</a>')


def test_email_in_english():
    template = Text("Your order $order_id is delayed", "Hello $name,\nnew expected delivery: $new_eta.")
    rendered = render(template, values(name="Ann", order_id="O-1", new_eta="12 March"), "email")
    assert rendered == Rendered(subject="Your order O-1 is delayed",
                                text="Hello Ann,\nnew expected delivery: 12 March.",
                                html="Hello Ann,<br>\nnew expected delivery: 12 March.")


def test_html_part_escapes_values_but_the_text_part_keeps_them():
    name = '<script>alert("x")</script> & Co'
    rendered = render(Text("Hi $name", "Hello $name"), values(name=name), "email")
    assert rendered.html == "Hello &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co"
    assert "<script>" not in rendered.html
    assert rendered.text == f"Hello {name}"
    assert rendered.subject == f"Hi {name}"


def test_html_part_escapes_the_template_text_and_links():
    rendered = render(Text(None, "Fish & chips <b>\n$yes_link"),
                      values(yes_link='https://a/y?t=1&u="2"'), "email")
    assert rendered.html == ('Fish &amp; chips &lt;b&gt;<br>\n'
                             '<a href="https://a/y?t=1&amp;u=&quot;2&quot;">https://a/y?t=1&amp;u=&quot;2&quot;</a>')


def test_line_breaks_in_values_become_br_in_html_and_spaces_in_the_subject():
    rendered = render(Text("About $items", "Delays:\n$items"), values(items="• O-1\n• O-2"), "email")
    assert rendered.html == "Delays:<br>\n• O-1<br>\n• O-2"
    assert rendered.subject == "About • O-1 • O-2"
    assert rendered.text == "Delays:\n• O-1\n• O-2"


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_sms_and_whatsapp_get_text_only(channel):
    assert render(FOLLOW_UP_DE, values(name="Änne"), channel) == Rendered(
        subject=None, text="Hallo Änne,\nIhr Anliegen  ist erledigt.\nJa: \nNein: ", html=None)


def test_webhook_gets_subject_and_text():
    rendered = render(FOLLOW_UP_DE, values(name="Ö"), "webhook")
    assert (rendered.subject, rendered.html) == ("Ist Ihr Problem gelöst, Ö?", None)


def test_missing_values_are_listed_by_name():
    with pytest.raises(RenderError, match=r"no value for placeholder\(s\): case_id, no_link, yes_link"):
        render(FOLLOW_UP_DE, {"name": "Ann", "company": "ACME"}, "sms")


def test_unknown_channels_are_refused():
    with pytest.raises(RenderError, match="unknown channel 'fax'"):
        render(FOLLOW_UP_DE, values(), "fax")


def test_dollar_signs_and_braced_placeholders():
    assert render(Text(None, "${order_id}: $$10"), values(order_id="O-1"), "sms").text == "O-1: $10"


def test_values_are_never_looked_into():
    assert syntax_errors("${name.__class__}") == ["invalid placeholder at character 1; write $$ for a dollar sign"]
    assert syntax_errors("$name.__class__") == []          # the name ends at the dot; the rest is text
    assert render(Text(None, "$name.__class__"), values(name="Ann"), "sms").text == "Ann.__class__"


def test_syntax_errors_name_each_position():
    assert [e.split(";")[0] for e in syntax_errors("costs $5 or ${")] == ["invalid placeholder at character 7",
                                                                        "invalid placeholder at character 13"]


@pytest.mark.parametrize(("preferred", "expected"), [
    ("de", "de"), ("en", "en"), ("de-AT", "de"), ("DE", "de"), ("de_CH", "de"), ("fr", "en"), (None, "en"),
    ("", "en")])
def test_language_choice_falls_back_to_the_default(preferred, expected):
    assert choose_language(preferred, ["de", "en"], "en") == expected


def test_language_choice_prefers_an_exact_regional_template():
    assert choose_language("pt-BR", ["pt", "pt-BR", "en"], "en") == "pt-BR"
    assert choose_language("pt-PT", ["pt", "pt-BR", "en"], "en") == "pt"


@pytest.mark.parametrize("language", ["de", "en"])
def test_every_shipped_template_renders_on_every_channel(language):
    tenant = load_config(SHIPPED).tenant("default")
    for trigger in tenant.triggers:
        template = tenant.template(trigger, language)
        for channel in ("email", "sms", "whatsapp", "webhook"):
            rendered = render(template, values(name="Zoë", company=tenant.company, case_id="C-1"), channel)
            assert rendered.text and "$" not in rendered.text


def test_shipped_follow_up_in_german():
    tenant = load_config(SHIPPED).tenant("default")
    language = tenant.language_for("de-DE")
    rendered = render(tenant.template("case_follow_up", language),
                      values(name="Frau Groß", case_id="C-42", company="Touchpoint", yes_link="http://y",
                             no_link="http://n"), "email")
    assert rendered.subject == "Ist Ihr Anliegen gelöst?"
    assert rendered.text.startswith("Hallo Frau Groß,\n\nwir haben Ihr Anliegen C-42 abgeschlossen.")
    assert "Ja, gelöst: http://y\nNein, noch nicht: http://n" in rendered.text
    assert '<a href="http://n">http://n</a>' in rendered.html
    assert rendered.text.endswith("Ihr Team von Touchpoint")
