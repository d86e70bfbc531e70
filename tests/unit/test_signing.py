"""Signed URLs: what is signed verifies; any change, expiry or retired key does not."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media_service.errors import InvalidSignature
from media_service.media.signing import (
    SigningKey,
    UrlSigner,
    derive_signing_key,
    parse_signing_keys,
)

NOW = 1_800_000_000
OLD = SigningKey("old", b"o" * 32)
NEW = SigningKey("new", b"n" * 32)
paths = st.text(
    alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1, max_size=80
)


@given(path=paths, ttl=st.integers(min_value=1, max_value=7 * 86400))
def test_a_signed_url_verifies_until_it_expires(path: str, ttl: int) -> None:
    signer = UrlSigner([NEW])
    signed = signer.sign("GET", path, NOW + ttl)
    signer.verify("GET", path, str(signed.expires), signed.kid, signed.signature, now=NOW)
    signer.verify("HEAD", path, str(signed.expires), signed.kid, signed.signature, now=NOW)
    with pytest.raises(InvalidSignature):
        signer.verify(
            "GET", path, str(signed.expires), signed.kid, signed.signature, now=NOW + ttl + 1
        )


@given(path=paths, other=paths, delta=st.integers(min_value=1, max_value=10**6))
def test_any_altered_part_fails(path: str, other: str, delta: int) -> None:
    signer = UrlSigner([NEW])
    signed = signer.sign("GET", path, NOW + 60)
    exp, kid, sig = str(signed.expires), signed.kid, signed.signature
    attempts = [
        ("GET", path, str(signed.expires + delta), kid, sig),
        ("POST", path, exp, kid, sig),
        ("GET", path, exp, "k0", sig),
        ("GET", path, exp, kid, sig[:-1] + ("A" if sig[-1] != "A" else "B")),
        ("GET", path, exp, kid, ""),
        ("GET", path, "", kid, sig),
        ("GET", path, "-5", kid, sig),
    ]
    if other != path:
        attempts.append(("GET", other, exp, kid, sig))
    for method, p, e, k, s in attempts:
        with pytest.raises(InvalidSignature):
            signer.verify(method, p, e, k, s, now=NOW)


def test_rotation_keeps_old_urls_valid_until_the_old_key_is_retired() -> None:
    before = UrlSigner([OLD]).sign("GET", "/x", NOW + 60)
    rotating = UrlSigner([NEW, OLD])
    rotating.verify("GET", "/x", str(before.expires), before.kid, before.signature, now=NOW)
    assert rotating.sign("GET", "/x", NOW + 60).kid == "new"
    retired = UrlSigner([NEW])
    with pytest.raises(InvalidSignature):
        retired.verify("GET", "/x", str(before.expires), before.kid, before.signature, now=NOW)


def test_signing_key_configuration() -> None:
    keys = parse_signing_keys("b:" + "2" * 16 + ", a:" + "1" * 16)
    assert [key.kid for key in keys] == ["b", "a"]
    for bad in ("", "nokey", "k:short", ":" + "x" * 20):
        with pytest.raises(ValueError, match="MEDIA_SIGNING_KEYS"):
            parse_signing_keys(bad)
    assert derive_signing_key("s1") == derive_signing_key("s1")
    assert derive_signing_key("s1").secret != derive_signing_key("s2").secret


@pytest.mark.parametrize("kid", ["k0", "k 1/ü&="])
def test_the_quick_query_is_the_signed_query_and_verifies(kid: str) -> None:
    signer = UrlSigner([SigningKey(kid, b"s" * 32)])
    path = "/api/v1/media/files/file_x/rendition?width=800&height=480"
    query = signer.sign_query("GET", path, 2_000_000_000)
    assert query == signer.sign("GET", path, 2_000_000_000).as_query()
    fields = dict(parse_qsl(query))
    signer.verify("GET", path, fields["exp"], fields["kid"], fields["sig"], now=1_999_999_999)
    with pytest.raises(InvalidSignature):
        signer.verify("GET", path + "0", fields["exp"], fields["kid"], fields["sig"], now=1)


@pytest.mark.parametrize(
    ("expires", "signature"),
    [
        ("²", "a"),  # a digit to str.isdigit, not to int()
        ("1" * 4301, "a"),  # past int()'s digit limit
        ("1" * 13, "a"),  # longer than any expiry we write
        ("1", "é"),  # compare_digest refuses non-ASCII strings
        ("٣", "a"),  # an Arabic-Indic digit
    ],
    ids=["superscript-two", "over-int-limit", "thirteen-digits", "non-ascii-sig", "arabic-digit"],
)
def test_a_garbled_expiry_or_signature_is_refused_not_an_error(
    expires: str, signature: str
) -> None:
    with pytest.raises(InvalidSignature):
        UrlSigner([NEW]).verify("GET", "/p", expires, "new", signature, now=NOW)


@given(expires=st.text(max_size=30), signature=st.text(min_size=1, max_size=128))
def test_whatever_the_query_holds_verify_raises_only_invalid_signature(
    expires: str, signature: str
) -> None:
    with pytest.raises(InvalidSignature):
        UrlSigner([NEW]).verify("GET", "/p", expires, "new", signature, now=NOW)
