"""Real local stand-ins for the notification providers: an SMTP server, the Twilio Messages API, the WhatsApp
Cloud API and a Standard Webhooks endpoint, each listening on 127.0.0.1 on a free port.

They check requests strictly, in the providers' documented formats (written from the providers' docs, not
from the production adapters), and refuse a wrong request the way the provider would: HTTP 401 for wrong
credentials or a bad signature, HTTP 400 with the reason in the provider's error body for anything else
(SMTP: ``554 5.6.0 <reason>``). Accepted messages are recorded; refusals are recorded as reasons.

Common to all four:
- ``start()`` / ``stop()`` (also ``with`` and ``async with``); restartable any number of times on the same
  port, so a test can take a provider down and bring it back.
- ``messages``: what was accepted, in arrival order; ``rejections``: the reasons of refused requests.
- ``count(key)`` / ``duplicates``: accepted messages per idempotency key (``Message-ID`` for email,
  ``I-Twilio-Idempotency-Token``, ``X-Idempotency-Key``, ``webhook-id``) for exactly-once assertions.
- ``fail_next(n, ...)``: the next ``n`` well-formed requests fail with the given status/code, unrecorded.
- ``await wait_for(n)``: until at least ``n`` messages were accepted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.stack import free_port

HOST = "127.0.0.1"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")


@dataclass(frozen=True)
class SignedRequest:
    """A provider callback ready to post: ``url`` (where the provider would call), raw body, headers."""

    url: str | None
    body: bytes
    headers: dict[str, str]


def twilio_sign(url: str, params: dict[str, str], auth_token: str) -> str:
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def meta_sign(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def standard_sign(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class _Recorder:
    """Recording, duplicate counting and failure injection; subclasses add the server."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Any] = []
        self.rejections: list[str] = []
        self._keys: Counter[str] = Counter()
        self._failures: list[tuple[int, int | None]] = []
        self._lock = threading.Lock()

    def _fail(self, n: int, status: int, code: int | None) -> None:
        with self._lock:
            self._failures.extend([(status, code)] * n)

    def count(self, key: str) -> int:
        return self._keys[key]

    @property
    def duplicates(self) -> dict[str, int]:
        return {key: n for key, n in self._keys.items() if n > 1}

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.rejections.clear()
            self._keys.clear()
            self._failures.clear()

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{type(self).__name__}: {len(self.messages)} of {n} messages arrived; "
                                   f"rejections: {self.rejections}")
            await asyncio.sleep(0.02)
        return list(self.messages)

    def _take_failure(self) -> tuple[int, int | None] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _record(self, key: str, message: Any) -> None:
        with self._lock:
            self.messages.append(message)
            self._keys[key] += 1

    def _rejected(self, reason: str) -> str:
        with self._lock:
            self.rejections.append(reason)
        return reason

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, *exc) -> None:
        self.stop()


# --- SMTP -----------------------------------------------------------------------------------------------------


class SmtpReceiver(_Recorder):
    """An SMTP server (aiosmtpd). ``messages`` holds parsed ``EmailMessage`` objects (``policy.default``, so
    ``msg["Subject"]`` is decoded); ``envelopes`` the (MAIL FROM, RCPT TO list) of each. With ``username`` and
    ``password`` it requires AUTH (PLAIN/LOGIN, offered without TLS on loopback) before MAIL FROM.
    ``fail_next(n, code=451)`` answers the DATA of the next ``n`` messages with that reply code (4xx transient,
    5xx permanent). Connect senders to ``.host`` / ``.port``."""

    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        super().__init__()
        self.host = HOST
        self.username, self.password = username, password
        self.envelopes: list[tuple[str, list[str]]] = []
        self._controller: Controller | None = None

    def start(self) -> None:
        # AUTH is offered without TLS (loopback only) and enforced in handle_MAIL.
        self._controller = Controller(self, hostname=HOST, port=self.port, authenticator=self._authenticate,
                                      auth_require_tls=False)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def fail_next(self, n: int = 1, code: int = 451) -> None:
        self._fail(n, code, None)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username \
            and auth_data.password.decode() == self.password
        return AuthResult(success=ok, handled=False)

    async def handle_MAIL(self, server, session, envelope, address, mail_options) -> str:
        if self.username is not None and not session.authenticated:
            return f"530 5.7.0 {self._rejected('authentication required')}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        try:
            email = self._checked(envelope.mail_from, list(envelope.rcpt_tos), envelope.mail_options,
                                  envelope.original_content)
        except ValueError as exc:
            return f"554 5.6.0 {self._rejected(str(exc))}"
        failure = self._take_failure()
        if failure is not None:
            code = failure[0]
            return f"{code} {'4.3.0' if code < 500 else '5.7.1'} simulated failure"
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self._record(email["Message-ID"], email)
        return "250 2.0.0 OK queued"

    @staticmethod
    def _checked(mail_from: str, rcpt_tos: list[str], options: list[str], raw: bytes) -> EmailMessage:
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.isascii() and "SMTPUTF8" not in options:
            raise ValueError("8-bit header without SMTPUTF8 (non-ASCII headers must be RFC 2047 encoded)")
        if not body.isascii() and "BODY=8BITMIME" not in options:
            raise ValueError("8-bit body without BODY=8BITMIME")
        email = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))  # wire CRLF → \n
        for name in ("From", "To", "Subject", "Date", "Message-ID"):
            if len(email.get_all(name) or []) != 1:
                raise ValueError(f"exactly one {name} header is required")
        if not re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", email["Message-ID"]):
            raise ValueError("Message-ID is not <id@domain>")
        if parseaddr(email["From"])[1] != mail_from:
            raise ValueError("MAIL FROM differs from the From header")
        if sorted(rcpt_tos) != sorted(addr for _, addr in getaddresses(email.get_all("To"))):
            raise ValueError("RCPT TO differs from the To header")
        SmtpReceiver._check_body(email)
        return email

    @staticmethod
    def _check_body(email: EmailMessage) -> None:
        parts = [email] if not email.is_multipart() else list(email.iter_parts())
        if email.is_multipart() and (email.get_content_type() != "multipart/alternative" or [
                p.get_content_type() for p in parts] != ["text/plain", "text/html"]):
            raise ValueError("a multipart email must be multipart/alternative of text/plain then text/html")
        if not email.is_multipart() and email.get_content_type() != "text/plain":
            raise ValueError("a single-part email must be text/plain")
        for part in parts:
            if part.get_content_charset() != "utf-8":
                raise ValueError(f"{part.get_content_type()} is not charset utf-8")
            part.get_content()  # raises for an undecodable body


# --- HTTP providers -------------------------------------------------------------------------------------------


class _HttpReceiver(_Recorder):
    """uvicorn serving a one-route Starlette app in a background thread (its own event loop)."""

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url

    def fail_next(self, n: int = 1, status: int = 500, code: int | None = None) -> None:
        self._fail(n, status, code)

    def start(self, timeout: float = 10.0) -> None:
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST", "PUT", "DELETE"])])
        config = uvicorn.Config(app, host=HOST, port=self.port, log_config=None, access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=type(self).__name__, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{type(self).__name__} did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.should_exit = True
            self._thread.join(10)
            self._server = None

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        try:
            key, record, answer = self.check(request, body)
        except Refused as refused:
            return self.error(refused.status, self._rejected(refused.reason), self.refusal_code(refused.status))
        failure = self._take_failure()
        if failure is not None:
            status, code = failure
            return self.error(status, "simulated failure", self.failure_code(status) if code is None else code)
        self._record(key, record)
        return answer

    def check(self, request: Request, body: bytes) -> tuple[str, Any, Response]:
        """(idempotency key, record, success response) of a well-formed request; raises Refused."""
        raise NotImplementedError

    def error(self, status: int, reason: str, code: int | None) -> Response:
        """The provider's error response."""
        raise NotImplementedError

    def refusal_code(self, status: int) -> int | None:
        return None

    def failure_code(self, status: int) -> int | None:
        return None


class Refused(Exception):
    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


def _require(condition: Any, reason: str, status: int = 400) -> None:
    if not condition:
        raise Refused(reason, status)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode("latin-1", "replace"))


def _check_route(request: Request, path: str, content_type: str) -> None:
    _require(request.method == "POST", f"method {request.method} not allowed")
    _require(request.url.path == path, f"unknown path {request.url.path}")
    _require(request.headers.get("content-type", "").split(";")[0].strip() == content_type,
             f"Content-Type must be {content_type}")


# --- Twilio ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwilioMessage:
    sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None
    idempotency_token: str


class TwilioReceiver(_HttpReceiver):
    """The Twilio Messages API: ``POST /2010-04-01/Accounts/{sid}/Messages.json``, basic auth sid:token,
    form fields To, From, Body (required) and StatusCallback, header ``I-Twilio-Idempotency-Token``. Answers
    201 with the message resource. Point the sender's ``base_url`` at ``.url``. ``fail_next(n, status, code)``
    answers Twilio's error body with ``code`` (default 20000 + status)."""

    FIELDS = {"To", "From", "Body", "StatusCallback"}

    def __init__(self, account_sid: str = "AC" + "0123456789abcdef" * 2, auth_token: str = "twilio-test-token"):
        super().__init__()
        self.account_sid, self.auth_token = account_sid, auth_token

    def check(self, request: Request, body: bytes) -> tuple[str, Any, Response]:
        _check_route(request, f"/2010-04-01/Accounts/{self.account_sid}/Messages.json",
                     "application/x-www-form-urlencoded")
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        _require(_same(request.headers.get("authorization", ""), expected), "Authenticate", 401)
        token = request.headers.get("i-twilio-idempotency-token", "")
        _require(0 < len(token) <= 256, "I-Twilio-Idempotency-Token header is required")
        form = self._form(body)
        _require(E164.match(form.get("To", "")), "To is not an E.164 phone number")
        _require(E164.match(form.get("From", "")) or ALPHANUMERIC_SENDER.match(form.get("From", "")),
                 "From is not an E.164 number or alphanumeric sender id")
        _require(0 < len(form.get("Body", "")) <= 1600, "Body must have 1 to 1600 characters")
        callback = form.get("StatusCallback")
        _require(callback is None or urlsplit(callback).scheme in ("http", "https"),
                 "StatusCallback is not an absolute http(s) URL")
        message = TwilioMessage("SM" + secrets.token_hex(16), form["To"], form["From"], form["Body"], callback, token)
        return token, message, JSONResponse(self._resource(message), status_code=201)

    @classmethod
    def _form(cls, body: bytes) -> dict[str, str]:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise Refused("the body is not form-encoded UTF-8") from None
        names = [name for name, _ in pairs]
        _require(len(names) == len(set(names)), "a parameter is repeated")
        _require(set(names) <= cls.FIELDS, f"unexpected parameters {sorted(set(names) - cls.FIELDS)}")
        return dict(pairs)

    def _resource(self, m: TwilioMessage) -> dict:
        return {"sid": m.sid, "account_sid": self.account_sid, "to": m.to, "from": m.from_, "body": m.body,
                "status": "queued", "direction": "outbound-api", "num_segments": "1", "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{m.sid}.json"}

    def error(self, status: int, reason: str, code: int | None) -> Response:
        body = {"code": code, "message": reason, "status": status,
                "more_info": f"https://www.twilio.com/docs/errors/{code}"}
        return JSONResponse(body, status_code=status)

    def refusal_code(self, status: int) -> int:
        return 20003 if status == 401 else 21601

    def failure_code(self, status: int) -> int:
        return 20000 + status

    def status_callback(self, message: TwilioMessage, status: str, error_code: str | None = None) -> SignedRequest:
        """The StatusCallback Twilio would post for ``message``, signed with this account's auth token."""
        params = {"MessageSid": message.sid, "SmsSid": message.sid, "MessageStatus": status, "SmsStatus": status,
                  "To": message.to, "From": message.from_, "AccountSid": self.account_sid, "ApiVersion": "2010-04-01"}
        if error_code:
            params["ErrorCode"] = error_code
        url = message.status_callback or ""
        headers = {"X-Twilio-Signature": twilio_sign(url, params, self.auth_token),
                   "Content-Type": "application/x-www-form-urlencoded"}
        return SignedRequest(url, urlencode(params).encode(), headers)


# --- WhatsApp Cloud API ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhatsAppMessage:
    id: str
    to: str
    type: str
    payload: dict = field(repr=False)
    idempotency_key: str = ""


class WhatsAppReceiver(_HttpReceiver):
    """The WhatsApp Cloud API: ``POST /{api_version}/{phone_number_id}/messages``, ``Authorization: Bearer``,
    JSON text / template / interactive reply-button messages checked field by field (unknown fields refused),
    header ``X-Idempotency-Key`` (Touchpoint's, not Meta's). Answers 200 with ``messages[0].id`` =
    ``wamid.…``. Point the sender's ``base_url`` at ``.url``. ``fail_next(n, status, code)`` answers Meta's
    error body with ``code`` (default 131000 for 5xx, 130429 for 429, else 131026)."""

    def __init__(self, phone_number_id: str = "106540352242922", access_token: str = "whatsapp-test-token",
                 api_version: str = "v21.0", app_secret: str = "whatsapp-app-secret") -> None:
        super().__init__()
        self.phone_number_id, self.access_token = phone_number_id, access_token
        self.api_version, self.app_secret = api_version, app_secret

    def check(self, request: Request, body: bytes) -> tuple[str, Any, Response]:
        _check_route(request, f"/{self.api_version}/{self.phone_number_id}/messages", "application/json")
        _require(_same(request.headers.get("authorization", ""), f"Bearer {self.access_token}"),
                 "Invalid OAuth access token.", 401)
        key = request.headers.get("x-idempotency-key", "")
        _require(key, "X-Idempotency-Key header is required")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Refused("the body is not JSON") from None
        check_whatsapp_payload(payload)
        message = WhatsAppMessage("wamid." + base64.b64encode(secrets.token_bytes(24)).decode(), payload["to"],
                                  payload["type"], payload, key)
        sent = {"id": message.id, "message_status": "accepted"} if message.type == "template" else {"id": message.id}
        answer = {"messaging_product": "whatsapp", "contacts": [{"input": message.to, "wa_id": message.to.lstrip("+")}],
                  "messages": [sent]}
        return key, message, JSONResponse(answer)

    def refusal_code(self, status: int) -> int:
        return 190 if status == 401 else 100

    def failure_code(self, status: int) -> int:
        return 131000 if status >= 500 else 130429 if status == 429 else 131026

    def error(self, status: int, reason: str, code: int | None) -> Response:
        body = {"error": {"message": reason, "type": "OAuthException", "code": code,
                          "error_data": {"messaging_product": "whatsapp", "details": reason},
                          "fbtrace_id": secrets.token_urlsafe(12)}}
        return JSONResponse(body, status_code=status)

    def status_webhook(self, message_id: str, status: str, recipient: str = "4915112345678",
                       error_code: int | None = None, timestamp: int | None = None) -> SignedRequest:
        """The status notification Meta would post to the app's webhook, signed with ``app_secret``."""
        entry: dict = {"id": message_id, "status": status, "timestamp": str(timestamp or int(time.time())),
                       "recipient_id": recipient}
        if error_code is not None:
            entry["errors"] = [{"code": error_code, "title": "Message failed to send"}]
        value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881",
                                                               "phone_number_id": self.phone_number_id},
                 "statuses": [entry]}
        body = orjson.dumps({"object": "whatsapp_business_account",
                             "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]})
        return SignedRequest(None, body, {"X-Hub-Signature-256": meta_sign(body, self.app_secret),
                                          "Content-Type": "application/json"})


def check_whatsapp_payload(payload: Any) -> None:
    """Raises Refused unless ``payload`` is a Cloud API text, template or interactive reply-button message."""
    _require(isinstance(payload, dict), "the body is not a JSON object")
    kind = payload.get("type")
    _require(kind in ("text", "template", "interactive"), "type must be text, template or interactive")
    _require(set(payload) == {"messaging_product", "recipient_type", "to", "type", kind},
             f"fields must be messaging_product, recipient_type, to, type and {kind}")
    _require(payload["messaging_product"] == "whatsapp", "messaging_product must be whatsapp")
    _require(payload["recipient_type"] == "individual", "recipient_type must be individual")
    _require(isinstance(payload["to"], str) and re.fullmatch(r"\+?[1-9]\d{6,14}", payload["to"]),
             "to is not a phone number")
    {"text": _check_text, "template": _check_template, "interactive": _check_interactive}[kind](payload[kind])


def _check_text(text: Any) -> None:
    _require(isinstance(text, dict) and set(text) <= {"body", "preview_url"}, "text has only body and preview_url")
    _require(isinstance(text.get("body"), str) and 0 < len(text["body"]) <= 4096, "text.body has 1-4096 chars")


def _check_template(template: Any) -> None:
    _require(isinstance(template, dict) and set(template) <= {"name", "language", "components"},
             "template has only name, language and components")
    _require(isinstance(template.get("name"), str) and re.fullmatch(r"[a-z0-9_]{1,512}", template["name"]),
             "template.name is not a template name")
    language = template.get("language")
    _require(isinstance(language, dict) and set(language) <= {"code", "policy"} and isinstance(
        language.get("code"), str) and re.fullmatch(r"[a-z]{2,3}(_[A-Z]{2})?", language["code"]),
        "template.language.code is not a language code")
    components = template.get("components", [])
    _require(isinstance(components, list), "template.components is not a list")
    for component in components:
        _require(isinstance(component, dict) and component.get("type") == "body" and set(component) == {
            "type", "parameters"} and isinstance(component["parameters"], list), "only body components are sent")
        for parameter in component["parameters"]:
            _require(parameter.get("type") == "text" and set(parameter) == {"type", "text"} and isinstance(
                parameter["text"], str) and parameter["text"], "body parameters are non-empty text")


def _check_interactive(interactive: Any) -> None:
    _require(isinstance(interactive, dict) and interactive.get("type") == "button", "interactive.type is button")
    _require(set(interactive) <= {"type", "body", "action", "header", "footer"}, "unexpected interactive fields")
    body = interactive.get("body")
    _require(isinstance(body, dict) and set(body) == {"text"} and isinstance(body["text"], str)
             and 0 < len(body["text"]) <= 1024, "interactive.body.text has 1-1024 chars")
    action = interactive.get("action")
    _require(isinstance(action, dict) and set(action) == {"buttons"} and isinstance(action["buttons"], list)
             and 1 <= len(action["buttons"]) <= 3, "interactive.action.buttons has 1 to 3 buttons")
    ids, titles = [], []
    for button in action["buttons"]:
        reply = button.get("reply") if isinstance(button, dict) else None
        _require(isinstance(reply, dict) and button.get("type") == "reply" and set(button) == {"type", "reply"}
                 and set(reply) == {"id", "title"}, "a button is {type: reply, reply: {id, title}}")
        _require(isinstance(reply["title"], str) and 0 < len(reply["title"]) <= 20, "button titles have 1-20 chars")
        _require(isinstance(reply["id"], str) and 0 < len(reply["id"]) <= 256, "button ids have 1-256 chars")
        ids.append(reply["id"])
        titles.append(reply["title"])
    _require(len(set(ids)) == len(ids) and len(set(titles)) == len(titles), "button ids and titles are unique")


# --- Standard Webhooks -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookDelivery:
    id: str
    timestamp: int
    payload: dict


class WebhookReceiver(_HttpReceiver):
    """A Standard Webhooks endpoint at ``.url`` (``path`` on the server): ``webhook-id``,
    ``webhook-timestamp`` (within ``tolerance_s``) and a matching ``webhook-signature`` (401 otherwise), JSON
    object body with ``type`` and ``data`` (400 otherwise). Answers 204."""

    def __init__(self, secret: str = "whsec_" + base64.b64encode(b"notification-webhook-test-key-32b").decode(),
                 path: str = "/hooks/notifications", tolerance_s: int = 300) -> None:
        super().__init__()
        self.secret, self.path, self.tolerance_s = secret, path, tolerance_s

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"

    def check(self, request: Request, body: bytes) -> tuple[str, Any, Response]:
        _check_route(request, self.path, "application/json")
        msg_id, timestamp = request.headers.get("webhook-id"), request.headers.get("webhook-timestamp", "")
        signatures = request.headers.get("webhook-signature", "")
        _require(msg_id and timestamp and signatures, "webhook-id, webhook-timestamp and webhook-signature required")
        _require(timestamp.isdigit() and abs(time.time() - int(timestamp)) <= self.tolerance_s,
                 "webhook-timestamp outside the tolerance", 401)
        expected = standard_sign(self.secret, msg_id, timestamp, body)
        _require(any(_same(s, expected) for s in signatures.split()), "no signature matches", 401)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Refused("the body is not JSON") from None
        _require(isinstance(payload, dict) and isinstance(payload.get("type"), str)
                 and isinstance(payload.get("data"), dict), "the body is not {type, data}")
        return msg_id, WebhookDelivery(msg_id, int(timestamp), payload), Response(status_code=204)

    def error(self, status: int, reason: str, code: int | None) -> Response:
        return JSONResponse({"error": reason}, status_code=status)
