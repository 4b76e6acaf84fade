from datetime import datetime, timezone

import pytest

from services.ingestion.normalise import ingest, ingested_event_id, key_identifier
from shared.cloudevents import CloudEvent, InvalidEvent
from shared.contracts import types
from shared.contracts.interaction import Identifier
from shared.identifiers import normalise_identifier

pytestmark = pytest.mark.unit

RECEIVED = datetime(2024, 5, 2, 8, 0, tzinfo=timezone.utc)
EVENT_TIME = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
OCCURRED = datetime(2024, 4, 30, 9, 15, tzinfo=timezone.utc)


def ident(type_: str, value: str) -> Identifier:
    return Identifier(type=type_, value=value)


def norm(type_: str, value: str, region: str = "DE") -> str:
    return normalise_identifier(ident(type_, value), region).value


def make_event(data: dict | None = None, *, type_: str = types.INTERACTION_OCCURRED, time=EVENT_TIME,
               extensions: dict | None = None, **data_overrides) -> CloudEvent:
    payload = data if data is not None else {
        "channel": "email", "direction": "inbound", "identifiers": [{"type": "email", "value": "a@example.com"}],
    }
    payload = {**payload, **data_overrides}
    return CloudEvent(id="evt-1", source="crm", type=type_, data=payload, time=time,
                      extensions=extensions if extensions is not None else {})


# --- identifiers ------------------------------------------------------------------------------------------

def test_email_trimmed_and_lower_cased():
    assert norm("email", "  Jane.Doe@Example.COM \n") == "jane.doe@example.com"


def test_national_phone_to_e164_with_region():
    assert norm("phone", "030 1234567", region="DE") == "+49301234567"


def test_international_phone_kept():
    assert norm("phone", "+1 650-253-0000", region="DE") == "+16502530000"


@pytest.mark.parametrize("value", ["not a phone", "1", "+49 1"])
def test_garbage_phone_rejected(value):
    with pytest.raises(InvalidEvent) as exc_info:
        norm("phone", value)
    assert exc_info.value.reason == "invalid_identifier"


def test_twitter_handle():
    assert norm("twitter", "@Foo") == "foo"


def test_numeric_whatsapp_id_is_a_phone_number():
    assert norm("whatsapp", "+4915112345678") == "+4915112345678"


def test_whatsapp_handle_is_not_a_phone_number():
    assert norm("whatsapp", "@Jane.Doe") == "jane.doe"


@pytest.mark.parametrize("wa_id, e164", [("4915112345678", "+4915112345678"), ("16502530000", "+16502530000")])
def test_whatsapp_id_without_plus_is_international(wa_id, e164):
    # WhatsApp ids (``wa_id``) are international numbers without the "+"; read with the default region they
    # currently become "+494915112345678" / "+4916502530000" and never match the same person's phone.
    assert norm("whatsapp", wa_id) == e164


# --- ingest -----------------------------------------------------------------------------------------------

def test_duplicates_after_normalisation_kept_once():
    event = make_event(identifiers=[
        {"type": "email", "value": "Jane@Example.com"},
        {"type": "phone", "value": "030 1234567"},
        {"type": "email", "value": " jane@example.com"},
        {"type": "phone", "value": "+49 30 1234567"},
    ])
    _, ingested = ingest(event, "default", "DE", RECEIVED)
    assert ingested.identifiers == [ident("email", "jane@example.com"), ident("phone", "+49301234567")]


def test_ingest_copies_source_and_event_id():
    _, ingested = ingest(make_event(), "default", "DE", RECEIVED)
    assert (ingested.source, ingested.event_id, ingested.received_at) == ("crm", "evt-1", RECEIVED)
    assert ingested.channel == "email"


def test_ingest_rejects_other_event_types():
    with pytest.raises(InvalidEvent) as exc_info:
        ingest(make_event(type_=types.INTERACTION_INGESTED), "default", "DE", RECEIVED)
    assert exc_info.value.reason == "unsupported_type"


def test_ingest_rejects_unknown_channel():
    with pytest.raises(InvalidEvent) as exc_info:
        ingest(make_event(channel="pigeon"), "default", "DE", RECEIVED)
    assert exc_info.value.reason == "invalid_data"
    assert "channel" in exc_info.value.detail
    assert exc_info.value.event_id == "evt-1"


SECRET_EMAIL = "zebra.quokka.4711@secret-example.org"


@pytest.mark.parametrize("data", [
    {"channel": "pigeon", "direction": "inbound", "identifiers": [{"type": "email", "value": SECRET_EMAIL}]},
    {"channel": "email", "direction": SECRET_EMAIL, "identifiers": [{"type": "email", "value": SECRET_EMAIL}]},
    {"channel": "email", "direction": "inbound", "identifiers": [{"type": "Bad Type", "value": SECRET_EMAIL}]},
    {"channel": "email", "direction": "inbound", "identifiers": SECRET_EMAIL},
    {"channel": "email", "direction": "inbound", "identifiers": [{"type": "email", "value": SECRET_EMAIL}],
     "occurred_at": SECRET_EMAIL},
    {"channel": "email", "direction": "inbound", "identifiers": [{"type": "phone", "value": SECRET_EMAIL}]},
])
def test_error_detail_never_contains_input_value(data):
    with pytest.raises(InvalidEvent) as exc_info:
        ingest(make_event(data), "default", "DE", RECEIVED)
    assert SECRET_EMAIL not in exc_info.value.detail
    assert SECRET_EMAIL not in str(exc_info.value)


def test_occurred_at_from_data_first():
    _, ingested = ingest(make_event(occurred_at=OCCURRED.isoformat()), "default", "DE", RECEIVED)
    assert ingested.occurred_at == OCCURRED


def test_occurred_at_falls_back_to_cloudevents_time():
    _, ingested = ingest(make_event(), "default", "DE", RECEIVED)
    assert ingested.occurred_at == EVENT_TIME


def test_occurred_at_falls_back_to_received_at():
    _, ingested = ingest(make_event(time=None), "default", "DE", RECEIVED)
    assert ingested.occurred_at == RECEIVED


def test_tenant_from_extension():
    tenant, _ = ingest(make_event(extensions={"tenant": "acme"}), "default", "DE", RECEIVED)
    assert tenant == "acme"


def test_tenant_defaults():
    tenant, _ = ingest(make_event(), "default", "DE", RECEIVED)
    assert tenant == "default"


# --- keys and ids -----------------------------------------------------------------------------------------

def test_key_identifier_prefers_user_id_then_email_then_phone():
    phone, email, user = ident("phone", "+49301234567"), ident("email", "a@example.com"), ident("user_id", "u1")
    assert key_identifier([phone, email, user]) == "user_id:u1"
    assert key_identifier([phone, email]) == "email:a@example.com"
    assert key_identifier([ident("cookie_id", "c1"), phone]) == "phone:+49301234567"


def test_key_identifier_independent_of_order():
    a, b = ident("email", "a@example.com"), ident("email", "b@example.com")
    assert key_identifier([a, b]) == key_identifier([b, a]) == "email:a@example.com"


def test_ingested_event_id_deterministic():
    first = ingested_event_id("acme", "crm", "evt-1")
    assert first == ingested_event_id("acme", "crm", "evt-1")
    assert first != ingested_event_id("other", "crm", "evt-1")
    assert first != ingested_event_id("acme", "shop", "evt-1")
    assert first != ingested_event_id("acme", "crm", "evt-2")


def test_nul_characters_are_refused_not_stored():
    from datetime import datetime, timezone

    from shared.cloudevents import CloudEvent, InvalidEvent, from_structured
    from services.ingestion.normalise import ingest

    event = CloudEvent(id="nul-1", source="crm", type="touchpoint.interaction.occurred.v1",
                       data={"channel": "chat", "direction": "inbound", "text": "a\x00b",
                             "identifiers": [{"type": "user_id", "value": "u1"}]})
    with pytest.raises(InvalidEvent) as exc:
        ingest(event, "t", "DE", datetime.now(timezone.utc))
    assert exc.value.reason == "invalid_data"
    with pytest.raises(InvalidEvent) as exc:
        from_structured({"specversion": "1.0", "id": "a\x00", "source": "crm", "type": "x"})
    assert exc.value.reason == "invalid_attribute"


def test_a_profile_is_normalised_and_its_email_and_phone_become_identifiers():
    data = {"identifiers": [{"type": "account_id", "value": " SHOP-1 "}], "given_name": "Anna",
            "birth_date": "1984-03-07", "email": "Anna@Example.com", "phone": "030 1234567",
            "address": {"postcode": "10117"}}
    tenant, profile = ingest(make_event(data, type_=types.PROFILE_UPDATED), "default", "DE", RECEIVED)
    assert [(i.type, i.value) for i in profile.identifiers] == [
        ("account_id", "SHOP-1"), ("email", "anna@example.com"), ("phone", "+49301234567")]
    assert (profile.given_name, profile.address.postcode, profile.occurred_at) == ("Anna", "10117", EVENT_TIME)


@pytest.mark.parametrize("data", [
    {"identifiers": [], "given_name": "Anna"},
    {"identifiers": [{"type": "account_id", "value": "1"}], "birth_date": "7.3.1984"},
    {"identifiers": [{"type": "account_id", "value": "1"}], "address": {"country": "Germany"}},
])
def test_an_invalid_profile_is_refused_with_the_field_named(data):
    with pytest.raises(InvalidEvent) as caught:
        ingest(make_event(data, type_=types.PROFILE_UPDATED), "default", "DE", RECEIVED)
    assert caught.value.reason == "invalid_data"
