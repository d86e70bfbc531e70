"""Pseudonyms of erased people: stable, keyed, shaped alike, and never the id itself."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from media_service.privacy.pseudonym import is_pseudonym, pseudonym

SECRET = "a-service-secret-long-enough-0123456789"
ids = st.text(min_size=1, max_size=128)


@given(organization=ids, user=ids)
def test_a_pseudonym_is_stable_shaped_and_does_not_contain_the_id(
    organization: str, user: str
) -> None:
    first = pseudonym(SECRET, organization, user)
    assert first == pseudonym(SECRET, organization, user)
    assert is_pseudonym(first) and len(first) == len("erased_") + 24
    if len(user) >= 4:
        assert user not in first


def test_organization_user_and_secret_each_change_it() -> None:
    base = pseudonym(SECRET, "org-1", "alice")
    assert pseudonym(SECRET, "org-2", "alice") != base
    assert pseudonym(SECRET, "org-1", "alicf") != base
    assert pseudonym(SECRET + "x", "org-1", "alice") != base
    # The parts are separated: moving a character from one to the other changes it.
    assert pseudonym(SECRET, "org-1a", "lice") != base


def test_only_pseudonyms_look_like_pseudonyms() -> None:
    assert not is_pseudonym("alice")
    assert not is_pseudonym("erased_" + "g" * 24)
    assert not is_pseudonym("erased_" + "a" * 23)
