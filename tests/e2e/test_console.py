"""The agent console in headless Chromium (Debian's package, driven by Playwright) against the running system:
ingestion, identity, timeline and routing as processes on real Kafka and PostgreSQL.

Interactions enter through the ingestion API; consent and preferences are published to the consent topic as
the CRM would; the notification and feedback events are the contract examples' shapes, published to their
topics for the customer. Screenshots go to ``tests/artifacts/screenshots``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest
from playwright.async_api import async_playwright

from shared.cloudevents import CloudEvent
from shared.contracts import types
from shared.kafka import event_record
from tests.support import kafka_io
from tests.support.stack import ROOT, new_stack

pytestmark = pytest.mark.e2e
SHOTS = ROOT / "tests" / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("TOUCHPOINT_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ROUTING_CONFIG = """
tenants:
  acme:
    version: 1
    sla:
      - {match: "true", first_response_s: 3600, resolution_s: 86400}
    workflow:
      default_targets:
        - {queue: general, expression: "true"}
"""
NOW = datetime.now(timezone.utc)
ANNA = {"email": "anna.berg@example.com", "phone": "+49 30 1234567", "twitter": "@annaberg", "contract_id": "C-4711"}


def interaction(channel: str, identifiers: dict[str, str], minutes_ago: float, subject: str, **extra) -> dict:
    data = {"channel": channel, "direction": "inbound", "subject": subject, "text": f"{subject} (text)",
            "identifiers": [{"type": k, "value": v} for k, v in identifiers.items()],
            "occurred_at": (NOW - timedelta(minutes=minutes_ago)).isoformat(), **extra}
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"test/{channel}",
            "type": "touchpoint.interaction.occurred.v1", "data": data}


async def ingest(stack, key: str, events: list[dict]) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(0, len(events), 200):
            resp = await client.post(stack.processes["ingestion"].url + "/v1/events",
                                     content=orjson.dumps(events[i:i + 200]),
                                     headers={"Authorization": f"Bearer {key}",
                                              "Content-Type": "application/cloudevents-batch+json"})
            assert resp.status_code == 202, resp.text


async def publish(stack, topic: str, tenant: str, event_type: str, key: str, data: dict) -> None:
    event = CloudEvent(id=str(uuid.uuid4()), source="test/console", type=event_type, time=datetime.now(timezone.utc),
                       data=data, extensions={"tenant": tenant})
    r = event_record("unused", key, event)
    await kafka_io.publish(stack.bootstrap_servers, stack.topic(topic), [(r.key, r.value, r.headers)])


async def get(stack, key: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(stack.processes["timeline"].url + path, headers={"Authorization": f"Bearer {key}"})


async def customer_of(stack, key: str, email: str) -> str:
    """The customer holding ``email``, once the timeline knows it."""
    found = {}

    async def known():
        resp = await get(stack, key, f"/v1/customers/lookup?type=email&value={email}")
        found.update(resp.json() if resp.status_code == 200 else {})
        return resp.status_code == 200
    await kafka_io.wait_for(known, timeout=60, what=f"the customer of {email}")
    return found["customer_id"]


async def wait_entries(stack, key: str, customer: str, at_least: int) -> None:
    async def enough():
        resp = await get(stack, key, f"/v1/customers/{customer}")
        return resp.status_code == 200 and resp.json()["entry_count"] >= at_least
    await kafka_io.wait_for(enough, timeout=60, what=f"{at_least} contacts of {customer}")


@pytest.fixture(scope="module")
async def world(infra, tmp_path_factory):
    config = tmp_path_factory.mktemp("console") / "routing.yaml"
    config.write_text(ROUTING_CONFIG)
    s = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    s.start("ingestion")
    s.start("identity")
    s.start("routing", TOUCHPOINT_ROUTING_CONFIG=str(config))
    s.start("timeline", TOUCHPOINT_IDENTITY_URL=s.processes["identity"].url,
            TOUCHPOINT_ROUTING_URL=s.processes["routing"].url, TOUCHPOINT_LIVE_IDLE_SECONDS="5")
    for proc in s.processes.values():
        await proc.wait_ready()
    keys = {"ingest": await s.api_key("acme", ["ingest"]), "agent": await s.api_key("acme", ["agent:ana"]),
            "read": await s.api_key("acme", ["read"]), "other": await s.api_key("globex", ["read", "ingest"])}

    events = [
        interaction("email", {"email": ANNA["email"]}, 600, "Invoice question"),
        interaction("phone", {"phone": ANNA["phone"], "email": ANNA["email"]}, 300, "Called about the invoice"),
        interaction("twitter", {"twitter": ANNA["twitter"], "email": ANNA["email"]}, 200, "Still no answer?"),
        interaction("whatsapp", {"phone": ANNA["phone"], "contract_id": ANNA["contract_id"]}, 30,
                    "Where is my parcel?", conversation_id="conv-anna-1"),
    ]
    # The contract is first seen alone, so it is a customer of its own until the WhatsApp message links it: a merge.
    letter = interaction("letter", {"contract_id": ANNA["contract_id"]}, 900, "Contract signed")
    await ingest(s, keys["ingest"], [letter])

    async def contract_known():
        return (await get(s, keys["read"], "/v1/customers/lookup?type=contract_id&value=C-4711")).status_code == 200
    await kafka_io.wait_for(contract_known, timeout=60, what="the contract's customer")
    bulk = [interaction("chat", {"email": "bulk@example.com"}, 10_000 - n, f"chat message {n}") for n in range(130)]
    await ingest(s, keys["ingest"], events + bulk)
    await ingest(s, keys["other"], [interaction("email", {"email": "secret@globex.example"}, 5, "Globex only")])
    resp = None

    async def found():
        nonlocal resp
        resp = await get(s, keys["read"], "/v1/customers/lookup?type=email&value=anna.berg@example.com")
        return resp.status_code == 200 and resp.json()["entry_count"] >= 5
    await kafka_io.wait_for(found, timeout=60, what="Anna's five contacts")
    anna = resp.json()["customer_id"]
    bulk_id = await customer_of(s, keys["read"], "bulk@example.com")
    await wait_entries(s, keys["read"], bulk_id, 130)
    other = await customer_of(s, keys["other"], "secret@globex.example")

    ref = {"customer_id": None, "identifiers": [{"type": "email", "value": ANNA["email"]}]}
    await publish(s, "touchpoint.consent.v1", "acme", types.PREFERENCES_CHANGED, ANNA["email"], {
        "customer": ref, "occurred_at": NOW.isoformat(), "display_name": "Anna Berg", "language": "de",
        "time_zone": "Europe/Berlin", "tier": "gold", "preferred_channel": "whatsapp"})
    for purpose, channel, granted in (("service", "email", True), ("marketing", "sms", False), ("surveys", "any", True)):
        await publish(s, "touchpoint.consent.v1", "acme",
                      types.CONSENT_GRANTED if granted else types.CONSENT_WITHDRAWN, ANNA["email"], {
                          "consent_id": f"crm-{purpose}-{channel}", "customer": ref, "purpose": purpose,
                          "channel": channel, "wording_version": "2026-01", "source": "web form",
                          "occurred_at": (NOW - timedelta(days=3)).isoformat()})
    await publish(s, "touchpoint.feedback.v1", "acme", types.FEEDBACK_RESPONDED, anna, {
        "customer_id": anna, "survey_id": "nps-relationship", "response_id": "r-1", "source": "link",
        "metric": "nps", "score": 3, "answers": {"nps": 3}, "at": (NOW - timedelta(days=2)).isoformat()})
    notification = {"customer_id": anna, "trigger": "shipment_delayed", "trigger_instance": "order-99",
                    "at": (NOW - timedelta(hours=2)).isoformat()}
    await publish(s, "touchpoint.notification.v1", "acme", types.NOTIFICATION_SUPPRESSED, anna, {
        **notification, "notification_id": "n-1", "purpose": "marketing", "step": "consent", "reason": "consent_withdrawn",
        "detail": "marketing on sms was withdrawn"})
    await publish(s, "touchpoint.notification.v1", "acme", types.NOTIFICATION_SENT, anna, {
        **notification, "notification_id": "n-2", "purpose": "service", "channel": "email",
        "provider_message_id": "msg-1", "consent_id": "crm-service-email"})

    async def header_complete():
        resp = await get(s, keys["read"], f"/v1/console/customers/{anna}")
        body = resp.json()
        return (body.get("display_name") == "Anna Berg" and len(body["consent"]) == 3 and body["scores"].get("nps")
                and len(body["notifications"]) == 2 and body["conversations"] and body["conversations"][0].get("live"))
    await kafka_io.wait_for(header_complete, timeout=60, what="Anna's header (consent, NPS, notifications, conversation)")

    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield {"stack": s, "keys": keys, "anna": anna, "bulk": bulk_id, "other": other, "browser": browser,
               "url": s.processes["timeline"].url + "/console"}
        await browser.close()
    s.stop_all()


async def page_for(world, key: str | None, query: str = "", lang: str = "en"):
    context = await world["browser"].new_context(viewport={"width": 1400, "height": 1000}, locale=lang)
    if key:
        await context.add_init_script(f"sessionStorage.setItem('touchpoint.key', {orjson.dumps(key).decode()});"
                                      f"localStorage.setItem('touchpoint.lang', '{lang}');")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    await page.goto(world["url"] + query)
    return page


async def test_screen_pop_by_phone_opens_the_customer_with_header_and_all_channels(world):
    page = await page_for(world, world["keys"]["agent"], "?phone=030%201234567")
    await page.wait_for_selector("body[data-customer]")
    assert await page.get_attribute("body", "data-customer") == world["anna"]
    assert await page.inner_text("#customer-name") == "Anna Berg"
    facts = {k: await page.inner_text(f"[data-fact='{k}'] dd") for k in ("tier", "language", "time_zone", "nps")}
    assert facts["tier"] == "gold" and facts["language"] == "de" and facts["time_zone"] == "Europe/Berlin"
    assert facts["nps"].startswith("3 ")
    idents = await page.eval_on_selector_all("#identifiers li", "ns => ns.map(n => n.dataset.identifier)")
    assert set(idents) == {"email:anna.berg@example.com", "phone:+49301234567", "twitter:annaberg",
                           "contract_id:C-4711"}, idents
    phone_channels = await page.inner_text("[data-identifier='phone:+49301234567']")
    assert "phone" in phone_channels and "whatsapp" in phone_channels
    consent = dict(await page.eval_on_selector_all(
        "#consent tbody tr", "ns => ns.map(n => [n.dataset.consent, n.children[2].textContent])"))
    assert consent == {"marketing/sms": "withdrawn", "service/email": "granted", "surveys/any": "granted"}
    channels = await page.eval_on_selector_all("#entries .entry[data-kind='interaction']", "ns => ns.map(n => n.dataset.channel)")
    assert {"email", "phone", "twitter", "whatsapp", "letter"} <= set(channels)
    kinds = set(await page.eval_on_selector_all("#entries .entry", "ns => ns.map(n => n.dataset.kind)"))
    assert {"interaction", "routing", "notification", "feedback"} <= kinds, kinds
    # The open WhatsApp conversation waits in its queue with its SLA clocks counting down.
    conversation = page.locator("[data-conversation='conv-anna-1']")
    assert re.search(r"queued · position \d+ in general · ETA", await conversation.inner_text())
    clock = conversation.locator(".clock[data-metric='first_response']")
    first = await clock.inner_text()
    await page.wait_for_function(
        "(t) => document.querySelector(\"[data-conversation='conv-anna-1'] .clock[data-metric='first_response']\").textContent !== t",
        arg=first, timeout=5000)
    second = await clock.inner_text()
    seconds = [sum(int(x) * 60 ** i for i, x in enumerate(reversed(re.search(r"([\d:]+) left", v).group(1).split(":"))))
               for v in (first, second)]
    assert seconds[1] < seconds[0], (first, second)
    decisions = dict(await page.eval_on_selector_all(
        "#notifications li", "ns => ns.map(n => [n.dataset.notification, n.textContent])"))
    assert "suppressed" in decisions["n-1"] and "consent_withdrawn" in decisions["n-1"]
    assert "sent" in decisions["n-2"]
    await page.screenshot(path=str(SHOTS / "console-customer.png"), full_page=True)
    assert not page.errors, page.errors
    print(f"\nscreen pop by phone: first render {await page.get_attribute('body', 'data-rendered-ms')} ms")


async def test_new_interaction_appears_live_without_reload(world):
    page = await page_for(world, world["keys"]["agent"], f"?customer={world['anna']}")
    await page.wait_for_selector("body[data-customer]")
    await page.wait_for_timeout(500)  # the live stream is open
    await page.evaluate("window.__navigations = performance.getEntriesByType('navigation').length")
    subject = f"Live message {uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    await ingest(world["stack"], world["keys"]["ingest"],
                 [interaction("sms", {"phone": ANNA["phone"]}, 0, subject)])
    await page.locator(".entry.new", has_text=subject).wait_for(timeout=15_000)
    latency = time.monotonic() - started
    assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1, "the page was not reloaded"
    assert await page.locator("#entries .entry").first.inner_text() != ""
    print(f"\nlive update: on the open page {latency:.2f} s after the ingestion API accepted it")
    await page.screenshot(path=str(SHOTS / "console-live.png"))


async def test_filters_by_channel_and_kind(world):
    page = await page_for(world, world["keys"]["read"], f"?customer={world['anna']}")
    await page.wait_for_selector("body[data-customer]")
    await page.select_option("#filter-channel", "phone")
    await page.wait_for_function("() => [...document.querySelectorAll('#entries .entry')].every(n => n.dataset.channel === 'phone')"
                                 " && document.querySelectorAll('#entries .entry').length > 0")
    assert await page.locator("#entries .entry[data-kind='interaction']").count() == 1  # the call (+ its routing)
    await page.select_option("#filter-channel", "")
    await page.select_option("#filter-kind", "routing")
    await page.wait_for_function("() => [...document.querySelectorAll('#entries .entry')].every(n => n.dataset.kind === 'routing')"
                                 " && document.querySelectorAll('#entries .entry').length > 0")
    await page.select_option("#filter-kind", "notification")
    await page.wait_for_function("() => document.querySelectorAll('#entries .entry[data-kind=notification]').length === 2"
                                 " && document.querySelectorAll('#entries .entry').length === 2")


async def test_infinite_scroll_pages_through_the_cursor_api(world):
    total, cursor = 0, ""
    while cursor is not None:
        body = (await get(world["stack"], world["keys"]["read"],
                          f"/v1/customers/{world['bulk']}/timeline?limit=500{cursor and '&cursor=' + cursor}")).json()
        total += len(body["entries"])
        cursor = body["next_cursor"]
    assert total >= 130
    page = await page_for(world, world["keys"]["read"], f"?customer={world['bulk']}")
    await page.wait_for_selector("body[data-customer]")
    shown = await page.locator("#entries .entry").count()
    assert shown == 50
    while shown < total:
        shown = min(shown + 50, total)
        await page.locator("#sentinel").scroll_into_view_if_needed()
        await page.wait_for_function(f"() => document.querySelectorAll('#entries .entry').length === {shown}")
    ids = await page.eval_on_selector_all("#entries .entry", "ns => ns.map(n => n.dataset.entry)")
    subjects = await page.eval_on_selector_all("#entries .entry[data-kind=interaction] .body",
                                               "ns => ns.map(n => n.textContent)")
    assert len(set(ids)) == total and len(set(subjects)) == 130 and subjects[0].startswith("chat message 129")
    assert await page.locator("#more").is_hidden()
    print(f"\ninfinite scroll: {total} entries in pages of 50")


async def test_sign_in_search_by_name_and_german_ui(world):
    page = await page_for(world, None, "?lang=de")
    await page.wait_for_selector("#login:not([hidden])")
    assert await page.inner_text("#login-title") == "Anmelden"
    await page.fill("#api-key", "tp_nope_nope")
    await page.click("#login-form button")
    await page.wait_for_selector("#login-error:has-text('nicht akzeptiert')")
    await page.fill("#api-key", world["keys"]["agent"])
    await page.press("#api-key", "Enter")
    await page.wait_for_selector("#search-form:not([hidden])")
    await page.fill("#search-input", "anna b")
    await page.press("#search-input", "Enter")
    await page.wait_for_selector("body[data-customer]")
    assert await page.get_attribute("body", "data-customer") == world["anna"]
    assert await page.inner_text("#timeline-title") == "Verlauf"
    assert await page.inner_text("[data-consent='marketing/sms'] td:nth-child(3)") == "widerrufen"
    for query in ("C-4711", "@AnnaBerg", "+49 30 1234567"):
        await page.fill("#search-input", query)
        await page.press("#search-input", "Enter")
        await page.wait_for_function(f"() => document.body.dataset.customer === '{world['anna']}' && "
                                     f"document.getElementById('status').textContent.includes('Anna Berg')")
    await page.screenshot(path=str(SHOTS / "console-de.png"), full_page=True)


async def test_identity_explanation_and_split_request(world):
    page = await page_for(world, world["keys"]["agent"], f"?customer={world['anna']}")
    await page.wait_for_selector("body[data-customer]")
    await page.click("#explain")
    await page.wait_for_selector("#identity-identifiers li")
    text = await page.inner_text("#identity-identifiers")
    assert "anna.berg@example.com" in text and "test/email" in text
    merges = await page.inner_text("#identity-merges")
    assert re.search(r"merged \S+ \(shared_identifier\) on .* via \w+:", merges), merges
    await page.click("#split-open")
    await page.check("#split-identifiers input[value*='twitter']")
    await page.fill("#split-reason", "this handle belongs to her brother")
    await page.click("#split-form button[type=submit]")
    await page.wait_for_selector("#split-result:has-text('Split requested')")
    (row,) = await world["stack"].fetch("SELECT customer_id, identifiers FROM identity.split_requests WHERE tenant = 'acme'")
    assert row["customer_id"] == world["anna"] and "annaberg" in row["identifiers"]


async def test_keyboard_navigation_and_labels(world):
    page = await page_for(world, world["keys"]["agent"], f"?customer={world['anna']}")
    await page.wait_for_selector("body[data-customer]")
    unlabelled = await page.evaluate(
        "[...document.querySelectorAll('input, select')].filter(n => !n.closest('[hidden]') && n.labels.length === 0)"
        ".map(n => n.id)")
    assert unlabelled == []
    await page.locator("#entries .entry").first.focus()
    await page.keyboard.press("ArrowDown")
    second = await page.evaluate("document.activeElement.dataset.entry")
    assert second == await page.locator("#entries .entry").nth(1).get_attribute("data-entry")
    await page.keyboard.press("/")
    assert await page.evaluate("document.activeElement.id") == "search-input"
    await page.keyboard.type(ANNA["contract_id"])
    await page.keyboard.press("Enter")
    await page.wait_for_function("() => document.getElementById('status').textContent.includes('Anna Berg')")


async def test_tenant_b_customer_is_not_reachable_with_tenant_a_credentials(world):
    page = await page_for(world, world["keys"]["agent"], f"?customer={world['other']}")
    await page.wait_for_selector("#status:has-text('not_found')")
    assert await page.get_attribute("body", "data-customer") is None
    page = await page_for(world, world["keys"]["agent"], "?email=secret@globex.example")
    await page.wait_for_selector("#status:has-text('secret@globex.example')")
    assert await page.get_attribute("body", "data-customer") is None
    for path in (f"/v1/console/customers/{world['other']}", f"/v1/console/customers/{world['other']}/identity",
                 f"/v1/customers/{world['other']}/timeline", f"/v1/console/customers/{world['other']}/live"):
        assert (await get(world["stack"], world["keys"]["agent"], path)).status_code == 404, path
    found = (await get(world["stack"], world["keys"]["agent"], "/v1/console/search?q=secret@globex.example")).json()
    assert found == {"results": []}
    # The same customer with its own tenant's key is there.
    assert (await get(world["stack"], world["keys"]["other"], f"/v1/console/customers/{world['other']}")).status_code == 200


async def test_a_merge_while_the_page_is_open_switches_it_to_the_survivor(world):
    stack, key = world["stack"], world["keys"]["ingest"]
    await ingest(stack, key, [interaction("email", {"email": "olga@example.com"}, 60, "First e-mail")])
    olga = await customer_of(stack, world["keys"]["read"], "olga@example.com")
    await ingest(stack, key, [interaction("phone", {"phone": "+49 40 5555555"}, 30, "A call")])

    async def phone_known():
        return (await get(stack, world["keys"]["read"], "/v1/customers/lookup?type=phone&value=040%205555555")).status_code == 200
    await kafka_io.wait_for(phone_known, timeout=60, what="the caller's customer")
    caller = (await get(stack, world["keys"]["read"], "/v1/customers/lookup?type=phone&value=040%205555555")).json()["customer_id"]
    assert caller != olga
    page = await page_for(world, world["keys"]["agent"], "?phone=040%205555555")
    await page.wait_for_selector(f"body[data-customer='{caller}']")
    await page.wait_for_timeout(500)  # the live stream is open
    await ingest(stack, key, [interaction("sms", {"phone": "+49 40 5555555", "email": "olga@example.com"}, 0, "It's me")])
    await page.wait_for_selector(f"body[data-customer='{olga}']", timeout=15_000)
    idents = await page.eval_on_selector_all("#identifiers li", "ns => ns.map(n => n.dataset.identifier)")
    assert set(idents) == {"email:olga@example.com", "phone:+49405555555"}
    assert caller in await page.inner_text("[data-fact='merged'] dd")
    assert not page.errors, page.errors


async def test_undoing_the_merge_moves_the_callers_entries_back(world):
    """Runs after the merge test: identity's undo gives the caller its id back, and the timeline moves back the
    entries only the caller's phone links to."""
    stack = world["stack"]
    admin = {"Authorization": f"Bearer {await stack.api_key('acme', ['admin'])}"}
    olga = await customer_of(stack, world["keys"]["read"], "olga@example.com")
    async with httpx.AsyncClient(base_url=stack.processes["identity"].url, timeout=10, headers=admin) as client:
        explained = (await client.get(f"/v1/identities/{olga}/explain")).json()
        (merge,) = explained["merges"]
        (caller,) = merge["merged_ids"]
        undone = await client.post(f"/v1/identities/merges/{merge['merge_id']}/undo")
        assert undone.status_code == 200, undone.text
        again = (await client.post(f"/v1/identities/merges/{merge['merge_id']}/undo")).json()
        assert again["split_ids"] == undone.json()["split_ids"]
        assert {(i["type"], i["value"]) for i in (await client.get(f"/v1/identities/{caller}")).json()["identifiers"]} == {
            ("phone", "+49405555555")}

    async def moved_back():
        resp = await get(stack, world["keys"]["read"], f"/v1/customers/{caller}/timeline")
        return resp.status_code == 200 and resp.json()["customer_id"] == caller and any(
            e["subject"] == "A call" for e in resp.json()["entries"])
    await kafka_io.wait_for(moved_back, timeout=30, what="the caller's timeline back")
    olga_subjects = {e["subject"] for e in (await get(stack, world["keys"]["read"], f"/v1/customers/{olga}/timeline")).json()["entries"]}
    assert "First e-mail" in olga_subjects and "A call" not in olga_subjects
    assert "It's me" in olga_subjects  # the linking message names both, so it stays with the survivor
    page = await page_for(world, world["keys"]["agent"], "?phone=040%205555555")
    await page.wait_for_selector(f"body[data-customer='{caller}']")
