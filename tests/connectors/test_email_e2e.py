"""Inbound email end to end: the services as processes, ingestion with its SMTP listener on, and a real SMTP
client (smtplib) delivering a three-message thread with an attachment → one conversation with three
interactions on the sender's timeline. The third message names only its parent (In-Reply-To, no
References), so it joins the thread through the listener's Message-ID table."""

from __future__ import annotations

import asyncio
import hashlib
import json
import smtplib
from email.message import EmailMessage

import httpx
import pytest

from tests.connectors.providers import CONFIG, TENANT
from tests.support import kafka_io
from tests.support.stack import free_port, new_stack

pytestmark = pytest.mark.e2e
PHOTO = b"\xff\xd8\xff\xe0 a small fake JPEG " * 20


@pytest.fixture(scope="module")
async def mail_stack(infra):
    stack = await new_stack(infra.bootstrap_servers, infra.admin_dsn)
    smtp_port = free_port()
    stack.start("ingestion", TOUCHPOINT_SMTP_ENABLED="true", TOUCHPOINT_SMTP_PORT=str(smtp_port),
                TOUCHPOINT_CONNECTORS=json.dumps(CONFIG))
    stack.start("identity")
    stack.start("timeline")
    for proc in stack.processes.values():
        await proc.wait_ready()
    yield stack, smtp_port
    stack.stop_all()


def thread() -> list[EmailMessage]:
    first, second, third = EmailMessage(), EmailMessage(), EmailMessage()
    for n, message in enumerate((first, second, third), start=1):
        message["From"] = "Fiona Kunde <Fiona.Kunde@example.org>"
        message["To"] = "Acme Support <support@acme.example>"
        message["Subject"] = "Broken blender" if n == 1 else "Re: Broken blender"
        message["Message-ID"] = f"<thread-{n}@mail.example.org>"
        message["Date"] = f"Mon, 09 Jun 2025 1{n}:00:00 +0000"
    first.set_content("My blender stopped working after two days.")
    second["In-Reply-To"] = "<thread-1@mail.example.org>"
    second["References"] = "<thread-1@mail.example.org>"
    second.set_content("Here is a photo of the damage.")
    second.add_attachment(PHOTO, maintype="image", subtype="jpeg", filename="damage.jpg")
    third["In-Reply-To"] = "<thread-2@mail.example.org>"
    third.set_content("Any news?")
    return [first, second, third]


def deliver(port: int, messages: list[EmailMessage]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for message in messages:
            smtp.send_message(message)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("someone@example.org", ["nobody@elsewhere.example"], b"Subject: x\r\n\r\nx")


async def test_three_message_thread_becomes_one_conversation(mail_stack):
    stack, smtp_port = mail_stack
    await asyncio.to_thread(deliver, smtp_port, thread())
    await asyncio.to_thread(deliver, smtp_port, thread()[:1])  # an MTA re-delivery of the first message
    key = await stack.api_key(TENANT, ["read"])
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=stack.processes["timeline"].url, headers=auth, timeout=30) as client:
        async def timeline():
            found = await client.get("/v1/customers/lookup", params={"type": "email", "value": "fiona.kunde@example.org"})
            if found.status_code != 200:
                return None
            entries = (await client.get(f"/v1/customers/{found.json()['customer_id']}/timeline")).json()["entries"]
            return entries if len(entries) >= 3 else None

        entries = await kafka_io.wait_for(timeline, timeout=90, what="three timeline entries")
        await asyncio.sleep(1)
        entries = await timeline()
    assert len(entries) == 3, "the re-delivered message is not a second entry"
    assert {e["event_id"] for e in entries} == {f"thread-{n}@mail.example.org" for n in (1, 2, 3)}
    assert len({e["conversation_id"] for e in entries}) == 1, "one conversation"
    assert {(e["channel"], e["direction"], e["source"]) for e in entries} == {("email", "inbound", "email")}
    with_photo = next(e for e in entries if e["event_id"] == "thread-2@mail.example.org")
    assert with_photo["tags"] == [f"attachment:{hashlib.sha256(PHOTO).hexdigest()}:{len(PHOTO)}:image/jpeg:damage.jpg"]
    assert "fake JPEG" not in str(entries), "attachments are references, not content"
    conn = await stack.connect()
    try:
        kept = await conn.fetchval("SELECT count(*) FROM ingestion.raw_payloads WHERE tenant = $1 AND connector = 'email'",
                                   TENANT)
    finally:
        await conn.close()
    assert kept == 3
    assert "fiona" not in stack.processes["ingestion"].log_path.read_text().lower(), "no addresses in the logs"
    print(f"\nemail: 3 messages (+1 re-delivery) over SMTP → 1 conversation, {len(entries)} timeline entries")
