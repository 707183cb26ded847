"""What a text from a plain phone means, and whether the gateway really sent it."""

from __future__ import annotations

from services.notify.keypad import (
    Said,
    from_household,
    from_volunteer,
    phone_key,
    signature,
    signed,
)


def test_digits_mean_what_the_messages_say_and_anything_else_means_nothing() -> None:
    assert from_volunteer(" 1 ") == Said("accept") and from_volunteer("2") == Said("decline")
    assert from_volunteer("D 4821") == Said("deliver", "4821") == from_volunteer("d4821")
    assert from_volunteer("4821") == Said("deliver", "4821")
    assert [from_volunteer(t) for t in ("yes", "12", "D 482", "3")] == [None] * 4
    assert from_household("1") == Said("confirm") and from_household("9") == Said("call_me")
    assert from_household("2") is None


def test_a_number_as_gateways_write_it_is_the_number_the_directory_keeps() -> None:
    assert phone_key("+86 139-1234 5678") == "13912345678" == phone_key("13912345678")


def test_only_a_fresh_body_signed_with_the_secret_is_the_gateways() -> None:
    secret, body = "s" * 32, b'{"from": "139", "text": "1"}'
    good = signature(secret, "1000", body)
    assert signed(secret, "1000", body, good, now=1100)
    assert not signed(secret, "1000", body + b" ", good, now=1100)  # the body changed
    assert not signed(secret, "1000", body, good, now=2000)  # too old: a replay later
    assert not signed("t" * 32, "1000", body, good, now=1100)
    assert not signed(secret, "soon", body, good, now=1100)


def test_full_width_digits_and_a_0086_sender_mean_what_their_plain_forms_mean() -> None:
    assert from_volunteer("Ｄ　４８２１") == Said("deliver", "4821")
    assert from_volunteer("１") == Said("accept") and from_household("９") == Said("call_me")
    assert from_volunteer("D ٤٨٢١") is None  # other scripts' digits are not a code
    assert phone_key("0086 139 1234 5678") == "13912345678" == phone_key("+８６13912345678")


def test_a_malformed_signature_header_is_a_wrong_signature_not_a_crash() -> None:
    secret, body = "s" * 32, b'{"from": "139", "text": "1"}'
    assert not signed(secret, "1000", body, "sha256=ñ" + "0" * 63, now=1100)
    assert not signed(secret, "１０００", body, signature(secret, "1000", body), now=1100)
