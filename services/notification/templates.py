"""Message templates: ``$placeholder`` text rendered per channel, and the choice of language.

Templates use :class:`string.Template` on purpose: a placeholder is a plain name (``$name``, ``${name}``),
never an attribute or index lookup, so a template written in a configuration file cannot reach into the
values it is given. ``$$`` writes a dollar sign.

Which names a template may use is fixed (:data:`KNOWN_PLACEHOLDERS`); the configuration rejects any other
name at load time, naming its path. The caller of :func:`render` supplies a value for every known name
(an empty string where one does not apply, e.g. ``order_id`` for a case follow-up), so that a template
never fails at send time for a name the configuration accepted. A value still missing raises
:class:`RenderError` listing every missing name, rather than sending a message with a gap in it.

What each channel gets:
- ``email``: subject, text and an HTML part. In the HTML part every value is HTML-escaped (a customer
  named ``<script>`` stays text), newlines become ``<br>``, and ``yes_link``/``no_link`` become links.
- ``webhook``: subject and text.
- ``sms`` and ``whatsapp``: text only.
In the subject, line breaks in values become spaces: a mail header cannot hold them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from string import Template
from typing import Protocol

KNOWN_PLACEHOLDERS = frozenset({
    "name",             # the customer's display name
    "case_id",
    "order_id",
    "shipment_id",
    "eta",              # the expected delivery, formatted for the message's language
    "new_eta",          # the new expected delivery of a delayed shipment
    "subject",          # the case's subject line
    "yes_link",         # answer link "yes, solved" (triggers with an answer)
    "no_link",          # answer link "no, not solved" (triggers with an answer)
    "items",            # digest: one line per bundled event, as a bullet list
    "company",          # the tenant's company name
    "survey_link",      # a survey invitation's signed link (feedback service)
    "survey_title",     # the survey's title in the message's language
    "conversation_id",
})
LINK_PLACEHOLDERS = frozenset({"yes_link", "no_link"})  # answer links: only in triggers with `answer`
CLICKABLE = LINK_PLACEHOLDERS | {"survey_link"}
CHANNELS_WITH_SUBJECT = frozenset({"email", "webhook"})
TEXT_ONLY_CHANNELS = frozenset({"sms", "whatsapp"})


class RenderError(ValueError):
    """A template could not be rendered: values are missing (listed by name) or the channel is unknown."""


class TemplateText(Protocol):
    """What a template is made of; ``services.notification.config.TemplateConfig`` is one."""

    subject: str | None
    body: str


@dataclass(frozen=True)
class Rendered:
    subject: str | None   # email and webhook only
    text: str
    html: str | None      # email only


def placeholders(template: TemplateText) -> set[str]:
    """Every placeholder name the template's subject and body use."""
    return {name for part in _parts(template) for name in names_in(part)}


def names_in(text: str) -> set[str]:
    """Every placeholder name ``text`` uses (invalid ``$`` uses are left to :func:`syntax_errors`)."""
    return set(Template(text).get_identifiers())


def syntax_errors(text: str) -> list[str]:
    """A description of each ``$`` that starts no valid placeholder (e.g. ``$5`` or ``${name``); empty when
    the text is fine."""
    pattern = Template.pattern
    return [f"invalid placeholder at character {match.start() + 1}; write $$ for a dollar sign"
            for match in pattern.finditer(text) if match.group("invalid") is not None]


def render(template: TemplateText, values: Mapping[str, str], channel: str) -> Rendered:
    """The message ``template`` makes for ``channel`` with ``values``.

    Raises :class:`RenderError` when a placeholder the template uses has no value (all missing names are
    listed) or the channel is unknown. Values not used by the template are ignored.
    """
    if channel not in CHANNELS_WITH_SUBJECT | TEXT_ONLY_CHANNELS:
        raise RenderError(f"unknown channel {channel!r}")
    missing = sorted(placeholders(template) - set(values))
    if missing:
        raise RenderError("no value for placeholder(s): " + ", ".join(missing))
    text = Template(template.body).substitute(values)
    if channel in TEXT_ONLY_CHANNELS:
        return Rendered(subject=None, text=text, html=None)
    subject = _subject(template.subject, values)
    return Rendered(subject=subject, text=text, html=_html(template.body, values) if channel == "email" else None)


def choose_language(preferred: str | None, available: list[str] | tuple[str, ...] | set[str],
                    default: str) -> str:
    """``preferred`` when a template exists in it (``de-AT`` matches ``de``; case does not matter), else
    ``default``. The configuration guarantees templates in the default language."""
    if preferred:
        wanted = preferred.strip().lower().replace("_", "-")
        by_lower = {language.lower(): language for language in available}
        for candidate in (wanted, wanted.split("-")[0]):
            if candidate in by_lower:
                return by_lower[candidate]
    return default


def _parts(template: TemplateText) -> list[str]:
    return [part for part in (template.subject, template.body) if part]


def _subject(subject: str | None, values: Mapping[str, str]) -> str | None:
    if subject is None:
        return None
    flat = {key: re.sub(r"\s*[\r\n]+\s*", " ", str(value)) for key, value in values.items()}
    return Template(subject).substitute(flat)


def _html(body: str, values: Mapping[str, str]) -> str:
    """The body as an HTML fragment: template text and values escaped, links clickable, lines kept."""
    escaped = {key: _html_value(key, str(value)) for key, value in values.items()}
    rendered = Template(html.escape(body, quote=False)).substitute(escaped)
    return re.sub(r"\r?\n", "<br>\n", rendered)


def _html_value(key: str, value: str) -> str:
    if key in CLICKABLE and value:
        return f'<a href="{html.escape(value)}">{html.escape(value)}</a>'
    return html.escape(value)
