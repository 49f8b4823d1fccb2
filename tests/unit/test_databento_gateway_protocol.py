"""The local Databento gateway's control lines: CRAM, parsing what the official client sends, and lines it parses.

The client's own encoder and parser (``databento.live.gateway``, ``databento.common.cram``) are the reference: a line
the client writes must parse here to the same fields, a line written here must parse in the client.
"""

from __future__ import annotations

import pytest
from databento.common import cram
from databento.live import gateway as client_gateway
from hypothesis import given, settings
from hypothesis import strategies as st

from services.tools.databento_gateway_protocol import (
    AUTHENTICATION_FAILED,
    MAXIMUM_LINE_BYTES,
    AuthenticationRequest,
    ControlLineError,
    SessionStart,
    SubscriptionRequest,
    UnsubscribeRequest,
    authentication_reply,
    challenge_response,
    format_line,
    greeting_lines,
    new_challenge,
    parse_client_line,
    response_matches,
)

KEY = "db-EXAMPLEexample0123456789ABCDE"
CODES = {"bad_line", "unknown_message", "missing_field", "unknown_field", "bad_value"}


def test_the_cram_response_is_the_clients():
    challenge = new_challenge()
    assert len(challenge) == 32 and challenge.isalnum()
    assert challenge != new_challenge()
    assert challenge_response(challenge, KEY) == cram.get_challenge_response(challenge, KEY)
    assert challenge_response(challenge, KEY).endswith("-ABCDE")


def test_only_the_right_key_matches():
    challenge = new_challenge()
    assert response_matches(challenge, KEY, cram.get_challenge_response(challenge, KEY))
    assert not response_matches(challenge, KEY, cram.get_challenge_response(challenge, KEY[:-1] + "X"))
    other_challenge = new_challenge()
    assert not response_matches(challenge, KEY, cram.get_challenge_response(other_challenge, KEY))
    digest = cram.get_challenge_response(challenge, KEY).split("-")[0]
    assert not response_matches(challenge, KEY, f"{digest}-XXXXX")  # the right digest, another bucket


def test_the_clients_authentication_request_parses():
    sent = client_gateway.AuthenticationRequest(
        auth=cram.get_challenge_response("abc", KEY),
        dataset="XNAS.ITCH",
        ts_out="1",
        compression="none",
        heartbeat_interval_s=5,
        slow_reader_behavior="skip",
    )
    request = parse_client_line(bytes(sent))
    assert request == AuthenticationRequest(
        auth=cram.get_challenge_response("abc", KEY),
        dataset="XNAS.ITCH",
        encoding="dbn",
        compression="none",
        ts_out=True,
        heartbeat_interval_seconds=5,
        slow_reader_behavior="skip",
        client=sent.client,
    )
    assert sent.client.startswith("Databento/")


def test_the_clients_subscription_requests_parse():
    sent = client_gateway.SubscriptionRequest(
        schema="mbp-10", stype_in="raw_symbol", symbols="AMZN,AAPL", snapshot=0, id=3, is_last=0
    )
    assert parse_client_line(bytes(sent)) == SubscriptionRequest(
        schema="mbp-10", symbol_type="raw_symbol", symbols=("AMZN", "AAPL"), subscription_id=3, is_last=False
    )
    replay = client_gateway.SubscriptionRequest(schema="trades", stype_in="instrument_id", symbols="42", start=17)
    assert parse_client_line(bytes(replay)) == SubscriptionRequest(
        schema="trades", symbol_type="instrument_id", symbols=("42",), start="17"
    )
    assert parse_client_line(bytes(client_gateway.SessionStart())) == SessionStart()


def test_an_unsubscribe_request_as_the_raw_api_documents_it():
    assert parse_client_line(b"unsubscribe|schema=trades|stype_in=raw_symbol|symbols=NQZ6\n") == UnsubscribeRequest(
        schema="trades", symbol_type="raw_symbol", symbols=("NQZ6",)
    )


def test_the_client_parses_what_the_gateway_writes():
    greeting, challenge = greeting_lines("pB3xCQWHRsgqeXgV9DrkdGGuA1t0AzmN").splitlines(keepends=True)
    assert isinstance(client_gateway.parse_gateway_message(greeting.decode()), client_gateway.Greeting)
    parsed = client_gateway.parse_gateway_message(challenge.decode())
    assert parsed == client_gateway.ChallengeRequest(cram="pB3xCQWHRsgqeXgV9DrkdGGuA1t0AzmN")
    assert client_gateway.parse_gateway_message(authentication_reply(7).decode()) == (
        client_gateway.AuthenticationResponse(success="1", session_id="7")
    )
    assert client_gateway.parse_gateway_message(authentication_reply(None, AUTHENTICATION_FAILED).decode()) == (
        client_gateway.AuthenticationResponse(success="0", error="Authentication failed.")
    )


def test_a_value_that_would_break_the_framing_is_refused():
    with pytest.raises(ValueError, match="framing"):
        format_line(error="a|b")
    with pytest.raises(ValueError, match="framing"):
        format_line(error="a\nsuccess=1")


@pytest.mark.parametrize(
    ("line", "code", "message"),
    [
        (b"\n", "bad_line", "empty line"),
        (b"schema=mbp-11|stype_in=raw_symbol|symbols=AMZN\n", "bad_value", "schema 'mbp-11' is not a Databento schema"),
        (b"schema=trades|stype_in=raw_symbol\n", "missing_field", "field symbols is missing"),
        (b"schema=trades|stype_in=raw_symbol|symbols=AMZN,,AAPL\n", "bad_value", "symbol '' is empty"),
        (b"schema=trades|stype_in=isin|symbols=AMZN\n", "bad_value", "stype_in 'isin' is not a symbology type"),
        (b"schema=trades|stype_in=raw_symbol|symbols=A|is_last=2\n", "bad_value", "is_last must be 0 or 1, not '2'"),
        (b"schema=trades|stype_in=raw_symbol|symbols=A|id=-1\n", "bad_value", "id must be a whole number"),
        (b"schema=trades|schema=mbo|stype_in=raw_symbol|symbols=A\n", "bad_line", "field 'schema' given twice"),
        (b"schema=trades|stype_in=raw_symbol|symbols=A|colour=red\n", "unknown_field", "unknown field 'colour'"),
        (b"auth=abc|dataset=XNAS.ITCH\n", "bad_value", "auth is not a CRAM response"),
        (b"schema=trades|stype_in=raw_symbol|symbols=\xc3\xa9\n", "bad_line", "line is not ASCII text"),
        (b"schema=trades|stype_in=raw\x01|symbols=A\n", "bad_line", "control characters"),
        (b"hello\n", "bad_line", "field 'hello' is not name=value"),
        (b"greeting=hi\n", "unknown_message", "not a request the gateway knows"),
        (b"start_session=0|extra=1\n", "unknown_field", "unknown field 'extra' in a session start"),
    ],
)
def test_a_malformed_line_is_refused_with_a_clear_reason(line, code, message):
    with pytest.raises(ControlLineError, match=message) as refused:
        parse_client_line(line)
    assert refused.value.code == code


def test_a_line_longer_than_the_limit_is_refused():
    line = b"schema=trades|stype_in=raw_symbol|symbols=" + b"A," * MAXIMUM_LINE_BYTES + b"A\n"
    with pytest.raises(ControlLineError, match="longer than 65,536"):
        parse_client_line(line)


VALID_LINES = [
    bytes(
        client_gateway.AuthenticationRequest(
            auth=cram.get_challenge_response("abc", KEY), dataset="XNAS.ITCH", heartbeat_interval_s=30
        )
    ).decode(),
    bytes(
        client_gateway.SubscriptionRequest(schema="mbp-10", stype_in="raw_symbol", symbols="AMZN,AAPL", id=1)
    ).decode(),
    "unsubscribe|schema=trades|stype_in=raw_symbol|symbols=AMZN|is_last=1\n",
    "start_session=0\n",
]
ODD_VALUES = st.one_of(
    st.sampled_from(["", "0", "1", "2", "-1", "99999999999", "1e3", "mbo", "zstd", "ALL_SYMBOLS", "A,,B", "A=B"]),
    st.text(max_size=12),
)


@st.composite
def mutated_lines(draw) -> bytes:
    """A line the client could send, with one to three fields given odd values, dropped, repeated or added."""
    fields = [token.partition("=") for token in draw(st.sampled_from(VALID_LINES)).rstrip("\n").split("|")]
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(fields) - 1))
        change = draw(st.sampled_from(["value", "drop", "repeat", "add"]))
        if change == "value":
            fields[index] = (fields[index][0], "=", draw(ODD_VALUES))
        elif change == "drop" and len(fields) > 1:
            del fields[index]
        elif change == "repeat":
            fields.append(fields[index])
        else:
            fields.insert(index, (draw(st.text(max_size=8)), "=", draw(ODD_VALUES)))
    return ("|".join("".join(field) for field in fields) + "\n").encode("utf-8", "replace")


@settings(max_examples=400, deadline=None)
@given(line=st.one_of(st.binary(max_size=300), mutated_lines()))
def test_any_line_parses_or_is_refused_with_a_reason_never_anything_else(line):
    try:
        request = parse_client_line(line)
    except ControlLineError as refused:
        assert refused.code in CODES
        assert str(refused)
        assert "\n" not in str(refused)
    else:
        assert isinstance(request, (AuthenticationRequest, SubscriptionRequest, UnsubscribeRequest, SessionStart))
