"""Unit tests of ``media.policy``: who may read, change, upload and report processing.

The expectations are explicit tables; properties (hypothesis) cover every combination of
roles; one test checks that the SQL form of a visibility selects exactly the files that
``Visibility.allows`` accepts, since the service reads through the first and checks
writes with the second.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from media_service.auth.principal import Principal, Role
from media_service.db.models import metadata
from media_service.media import policy
from media_service.media.models import FileType, MediaFile, OwnerType
from media_service.media.repository import visible_clause as _visible

ST, CS, TE, OT, US = (
    OwnerType.STUDENT,
    OwnerType.CLASS_SESSION,
    OwnerType.TEACHER,
    OwnerType.OTHER,
    OwnerType.USER,
)
A, B = "org-a", "org-b"


def who(sub: str, org: str, *roles: Role) -> Principal:
    return Principal(sub, org, frozenset(roles))


def media(label: str, owner_type: OwnerType, owner_id: str, by: str, org: str = A) -> MediaFile:
    return MediaFile(
        file_id=f"file_{label}",
        organization_id=org,
        owner_type=owner_type,
        owner_id=owner_id,
        uploaded_by=by,
        file_name=f"{label}.jpg",
        file_type=FileType.IMAGE,
        content_type="image/jpeg",
        file_size=1,
        sha256=label.ljust(64, "0")[:64],
        storage_path=f"files/{label}",
    )


FILES = {
    f.file_id.removeprefix("file_"): f
    for f in [
        media("s1", ST, "s1", "s1"),
        media("s1_by_admin", ST, "s1", "admin-a"),
        media("s2_from_s1", ST, "s2", "s1"),  # s1 uploaded it, an admin gave it to s2
        media("t1", TE, "t1", "t1"),
        media("t1_upload_moved", ST, "s1", "t1"),  # t1 uploaded it, now s1's
        media("cs1", CS, "cs1", "t1"),
        media("cs2", CS, "cs2", "admin-a"),
        media("other_t1", OT, "report", "t1"),
        media("other_m1", OT, "x", "m1"),  # a member's Other upload (no longer allowed)
        media("m1", US, "m1", "m1"),
        media("user_s1", US, "s1", "admin-a"),  # same id as student s1, other owner type
        media("b_cs", CS, "cs1", "admin-b", B),
        media("b_s1", ST, "s1", "s1", B),  # same owner and uploader ids, other org
    ]
}
ALL_A = "s1 s1_by_admin s2_from_s1 t1 t1_upload_moved cs1 cs2 other_t1 other_m1 m1 user_s1"
T1_SEES = "t1 t1_upload_moved cs1 cs2 other_t1"
S1_OWNS = "s1 s1_by_admin t1_upload_moved"  # not s2_from_s1, which s1 uploaded

PRINCIPALS = {
    "admin_a": who("admin-a", A, Role.ADMIN),
    "admin_b": who("admin-b", B, Role.ADMIN),
    "service_a": who("svc-a", A, Role.SERVICE),
    "teacher_t1": who("t1", A, Role.TEACHER),
    "teacher_t2": who("t2", A, Role.TEACHER),
    "student_s1": who("s1", A, Role.STUDENT),
    "student_s2": who("s2", A, Role.STUDENT),
    "student_s1_of_b": who("s1", B, Role.STUDENT),
    "member_m1": who("m1", A, Role.MEMBER),
    "member_m2": who("m2", A, Role.MEMBER),
    "frame": Principal("frame-1", A, frozenset({Role.FRAME}), frame_id="frame-1"),
    "no_roles": who("nobody", A),
    "uploader_without_roles": who("t1", A),  # t1's sub, but no role: nothing
    "teacher_admin_t1": who("t1", A, Role.TEACHER, Role.ADMIN),
    "student_member_s1": who("s1", A, Role.STUDENT, Role.MEMBER),
    "service_teacher_t1": who("t1", A, Role.SERVICE, Role.TEACHER),
    "frame_member_m1": who("m1", A, Role.FRAME, Role.MEMBER),
    "service_frame": who("svc-a", A, Role.SERVICE, Role.FRAME),
}

#   principal                reads                            writes
EXPECTED: dict[str, tuple[str, str]] = {
    "admin_a": (ALL_A, ALL_A),
    "admin_b": ("b_cs b_s1", "b_cs b_s1"),
    "service_a": (ALL_A, ""),
    "teacher_t1": (T1_SEES, T1_SEES),
    "teacher_t2": ("cs1 cs2", "cs1 cs2"),
    "student_s1": (S1_OWNS, S1_OWNS),
    "student_s2": ("s2_from_s1", "s2_from_s1"),
    "student_s1_of_b": ("b_s1", "b_s1"),
    "member_m1": ("m1", "m1"),
    "member_m2": ("", ""),
    "frame": ("", ""),
    "no_roles": ("", ""),
    "uploader_without_roles": ("", ""),
    "teacher_admin_t1": (ALL_A, ALL_A),
    "student_member_s1": (f"{S1_OWNS} user_s1", f"{S1_OWNS} user_s1"),
    "service_teacher_t1": (ALL_A, T1_SEES),
    "frame_member_m1": ("m1", "m1"),
    "service_frame": (ALL_A, ""),
}
assert EXPECTED.keys() == PRINCIPALS.keys()


def allowed(visibility: policy.Visibility) -> set[str]:
    return {label for label, file in FILES.items() if visibility.allows(file)}


@pytest.mark.parametrize("name", list(PRINCIPALS))
def test_read_visibility(name: str) -> None:
    assert allowed(policy.read_visibility(PRINCIPALS[name])) == set(EXPECTED[name][0].split())


@pytest.mark.parametrize("name", list(PRINCIPALS))
def test_write_visibility(name: str) -> None:
    assert allowed(policy.write_visibility(PRINCIPALS[name])) == set(EXPECTED[name][1].split())


@pytest.mark.parametrize("name", list(PRINCIPALS))
def test_private_implied_only_where_every_readable_file_is_private_to_the_caller(
    name: str,
) -> None:
    principal = PRINCIPALS[name]
    readable = allowed(policy.read_visibility(principal))
    private = allowed(policy.private_visibility(principal))
    if policy.private_implied(principal):
        assert readable <= private
    assert policy.private_implied(principal) or principal.has(Role.TEACHER, Role.SERVICE)


@pytest.mark.parametrize("name", list(PRINCIPALS))
def test_reads_only_own_means_every_readable_file_is_owned_by_the_caller(name: str) -> None:
    principal = PRINCIPALS[name]
    if policy.reads_only_own(principal):
        readable = [FILES[label] for label in allowed(policy.read_visibility(principal))]
        assert all(file.owner_id == principal.subject for file in readable)


def test_visibility_fields_that_repositories_turn_into_sql() -> None:
    teacher = policy.read_visibility(PRINCIPALS["teacher_t1"])
    assert (teacher.organization_id, teacher.subject, teacher.everything) == (A, "t1", False)
    assert teacher.shared_owner_types == {CS}
    assert teacher.personal_owner_types == {TE}
    assert teacher.own_uploads is True
    student_member = policy.read_visibility(PRINCIPALS["student_member_s1"])
    assert student_member.personal_owner_types == {ST, US}
    assert student_member.shared_owner_types == frozenset()
    assert student_member.own_uploads is False
    for name in ("frame", "no_roles", "uploader_without_roles"):
        nothing = policy.read_visibility(PRINCIPALS[name])
        assert nothing.subject == "", name  # no subject: no "owned by"/"uploaded by" clause
        assert nothing.everything is False, name
        assert nothing.own_uploads is False, name
        assert nothing.shared_owner_types == nothing.personal_owner_types == frozenset(), name
    assert policy.read_visibility(PRINCIPALS["service_a"]).everything is True
    assert policy.write_visibility(PRINCIPALS["service_a"]).everything is False


# -- uploads -------------------------------------------------------------------------------

#   principal, owner_type, owner_id, may upload
UPLOADS: list[tuple[str, OwnerType, str, bool]] = [
    ("admin_a", ST, "anyone", True),
    ("admin_a", US, "m2", True),
    ("admin_a", OT, "x", True),
    ("service_a", CS, "cs9", True),
    ("service_a", TE, "t2", True),
    ("service_a", US, "m1", True),
    ("teacher_t1", CS, "cs9", True),
    ("teacher_t1", TE, "t1", True),
    ("teacher_t1", OT, "report", True),
    ("teacher_t1", TE, "t2", False),
    ("teacher_t1", ST, "s1", False),
    ("teacher_t1", US, "t1", False),
    ("student_s1", ST, "s1", True),
    ("student_s1", ST, "s2", False),
    ("student_s1", CS, "cs1", False),
    ("student_s1", OT, "x", False),
    ("student_s1", TE, "s1", False),
    ("student_s1", US, "s1", False),
    ("member_m1", US, "m1", True),
    ("member_m1", US, "m2", False),
    ("member_m1", OT, "x", False),  # they could not see it afterwards
    ("member_m1", ST, "m1", False),
    ("member_m1", CS, "cs1", False),
    ("frame", US, "frame-1", False),
    ("frame", OT, "x", False),
    ("no_roles", US, "nobody", False),
    ("no_roles", OT, "x", False),
    ("teacher_admin_t1", ST, "s1", True),
    ("student_member_s1", ST, "s1", True),
    ("student_member_s1", US, "s1", True),
    ("student_member_s1", US, "m1", False),
    ("student_member_s1", OT, "x", False),
    ("service_teacher_t1", ST, "s1", True),
    ("frame_member_m1", US, "m1", True),
    ("frame_member_m1", US, "frame-1", False),
]


@pytest.mark.parametrize(("name", "owner_type", "owner_id", "may"), UPLOADS)
def test_can_upload_for(name: str, owner_type: OwnerType, owner_id: str, may: bool) -> None:
    assert policy.can_upload_for(PRINCIPALS[name], owner_type, owner_id) is may


DEFAULT_OWNERS: dict[str, tuple[OwnerType, str] | None] = {
    "admin_a": None,  # admins and services must name the owner
    "service_a": None,
    "frame": None,
    "no_roles": None,
    "teacher_t1": (TE, "t1"),
    "student_s1": (ST, "s1"),
    "member_m1": (US, "m1"),
    "teacher_admin_t1": (TE, "t1"),
    "student_member_s1": (ST, "s1"),  # Student before User
    "service_teacher_t1": (TE, "t1"),
    "frame_member_m1": (US, "m1"),
}


@pytest.mark.parametrize("name", list(DEFAULT_OWNERS))
def test_default_owner(name: str) -> None:
    assert policy.default_owner(PRINCIPALS[name]) == DEFAULT_OWNERS[name]


def test_default_owner_of_a_teacher_who_is_also_a_student_is_student() -> None:
    both = who("ta", A, Role.TEACHER, Role.STUDENT)
    assert policy.default_owner(both) == (ST, "ta")


@pytest.mark.parametrize(
    ("name", "may"),
    [
        ("admin_a", True),
        ("service_a", True),
        ("service_teacher_t1", True),
        ("teacher_admin_t1", True),
        ("service_frame", True),
        ("teacher_t1", False),
        ("student_s1", False),
        ("member_m1", False),
        ("frame", False),
        ("no_roles", False),
    ],
)
def test_can_mark_processed(name: str, may: bool) -> None:
    assert policy.can_mark_processed(PRINCIPALS[name]) is may


# -- properties over every combination of roles --------------------------------------------

ROLE_SETS = [
    frozenset(combo)
    for size in range(len(Role) + 1)
    for combo in itertools.combinations(list(Role), size)
]
principals = st.builds(
    Principal,
    subject=st.sampled_from(["s1", "t1", "m1", "admin-a", "svc-a", "zz"]),
    organization_id=st.sampled_from([A, B]),
    roles=st.sampled_from(ROLE_SETS),
)


@given(principals)
def test_never_outside_the_organization(principal: Principal) -> None:
    for visibility in (policy.read_visibility(principal), policy.write_visibility(principal)):
        for file in FILES.values():
            if visibility.allows(file):
                assert file.organization_id == principal.organization_id


@given(principals)
def test_writes_are_a_subset_of_reads(principal: Principal) -> None:
    assert allowed(policy.write_visibility(principal)) <= allowed(policy.read_visibility(principal))


@given(principals, st.sampled_from(list(Role)))
def test_another_role_never_takes_rights_away(principal: Principal, extra: Role) -> None:
    more = Principal(principal.subject, principal.organization_id, principal.roles | {extra})
    for rights in (policy.read_visibility, policy.write_visibility):
        assert allowed(rights(principal)) <= allowed(rights(more))
    for owner_type, owner_id in itertools.product(OwnerType, ["s1", "t1", "m1", "zz"]):
        if policy.can_upload_for(principal, owner_type, owner_id):
            assert policy.can_upload_for(more, owner_type, owner_id)


@given(principals)
def test_the_service_role_adds_reads_only(principal: Principal) -> None:
    """Writes of ``X + service`` are those of ``X`` (unless X is an admin anyway)."""
    with_service = Principal(
        principal.subject, principal.organization_id, principal.roles | {Role.SERVICE}
    )
    without = Principal(
        principal.subject, principal.organization_id, principal.roles - {Role.SERVICE}
    )
    assert allowed(policy.write_visibility(with_service)) == allowed(
        policy.write_visibility(without)
    )
    assert policy.read_visibility(with_service).everything


@given(principals)
def test_default_owner_is_one_the_caller_may_upload_for(principal: Principal) -> None:
    default = policy.default_owner(principal)
    if default is not None:
        assert policy.can_upload_for(principal, *default)
        assert default[1] == principal.subject


@given(principals)
def test_uploaders_can_read_what_they_upload(principal: Principal) -> None:
    """Whatever a caller may store, it may read back right after (as its uploader)."""
    for owner_type, owner_id in itertools.product(OwnerType, ["s1", "t1", "m1", "zz"]):
        if policy.can_upload_for(principal, owner_type, owner_id):
            org = principal.organization_id
            fresh = media("fresh", owner_type, owner_id, principal.subject, org)
            assert policy.read_visibility(principal).allows(fresh), (owner_type, owner_id)


# -- the SQL form agrees with allows() -----------------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(
            media(label, f.owner_type, f.owner_id, f.uploaded_by, f.organization_id)
            for label, f in FILES.items()
        )
        session.commit()
        yield session
    engine.dispose()


def test_sql_selects_exactly_what_allows_accepts(database: Session) -> None:
    """The service reads through the repository's SQL and checks writes with ``allows``;
    if the two disagreed, a caller could change what it cannot see, or the reverse."""
    wrong = []
    for roles, subject, org in itertools.product(ROLE_SETS, ["s1", "t1", "m1", "zz"], [A, B]):
        principal = Principal(subject, org, roles)
        for visibility in (policy.read_visibility(principal), policy.write_visibility(principal)):
            statement = select(MediaFile.file_id).where(_visible(visibility))
            selected = {file_id.removeprefix("file_") for file_id in database.scalars(statement)}
            if selected != allowed(visibility):
                wrong.append(
                    f"{sorted(r.value for r in roles)} {subject}@{org}: SQL {sorted(selected)}, "
                    f"allows {sorted(allowed(visibility))}"
                )
    assert wrong == [], f"{len(wrong)} disagreements, e.g.\n" + "\n".join(wrong[:6])
