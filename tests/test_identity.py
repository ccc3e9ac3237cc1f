"""Identity lookups by email are exact, ignoring case: no LIKE wildcards, in FAB's users and in ``user_emails``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hitl import identity

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
NOT_ALICE = ["a_ice@example.com", "%@example.com", "_lice@example.com", "alice@example.co_", "%", "", "  "]


@pytest.fixture
def fab_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """FAB's user tables in a SQLite file, with alice (user role) and bob; Airflow's session points at it."""
    from airflow.providers.fab.auth_manager.models import Role, User
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    engine = create_engine(f"sqlite:///{tmp_path / 'fab.db'}")
    User.metadata.create_all(engine)
    make_session = sessionmaker(bind=engine)
    with make_session() as session:
        role = Role(name="User")
        session.add(role)
        for name in ("alice", "bob"):
            session.add(
                User(
                    first_name=name,
                    last_name="X",
                    username=name,
                    email=f"{name}@example.com",
                    active=True,
                    roles=[role],
                )
            )
        session.commit()

    @contextlib.contextmanager
    def create_session(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with make_session() as session:
            yield session

    import airflow.utils.session

    monkeypatch.setattr(airflow.utils.session, "create_session", create_session)
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", FAB)
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "")
    yield
    engine.dispose()


@pytest.mark.usefixtures("fab_users")
def test_fab_email_lookup_is_exact_ignoring_case() -> None:
    for email in ("alice@example.com", "ALICE@example.com", " Alice@Example.COM "):
        found = identity.reviewer_by_email(email)
        assert found is not None and found.name == "alice" and found.roles == frozenset({"user"}), email
    for email in NOT_ALICE:
        assert identity.reviewer_by_email(email) is None, email


@pytest.mark.usefixtures("fab_users")
def test_fab_name_lookup_is_exact() -> None:
    assert identity.lookup_reviewer("alice").email == "alice@example.com"
    assert identity.lookup_reviewer("a_ice").email is None
    assert identity.lookup_reviewer("%").email is None


def test_fab_filter_compares_lowercased_email_with_equality_not_like() -> None:
    from airflow.providers.fab.auth_manager.models import User

    clause = identity.fab_user_filter(User, email="A_ice%@Example.com")
    sql = str(clause.compile(compile_kwargs={"literal_binds": True})).lower()
    assert "like" not in sql
    assert sql == "lower(ab_user.email) = 'a_ice%@example.com'"
    by_name = str(identity.fab_user_filter(User, username="a_ice").compile(compile_kwargs={"literal_binds": True}))
    assert "like" not in by_name.lower() and by_name.endswith("= 'a_ice'")


def test_user_emails_lookup_is_exact_ignoring_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "alice:user,bob:admin")
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:alice@example.com, bob:bob@example.com")
    found = identity.reviewer_by_email("ALICE@example.com")
    assert found is not None and found.name == "alice" and found.roles == frozenset({"user"})
    for email in NOT_ALICE:
        assert identity.reviewer_by_email(email) is None, email


def test_user_emails_shared_by_two_users_maps_to_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "")
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:team@example.com,bob:TEAM@example.com")
    assert identity.reviewer_by_email("team@example.com") is None
