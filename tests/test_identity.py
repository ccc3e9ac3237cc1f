"""Identity lookups by email are exact ASCII, ignoring case: no LIKE wildcards, no Unicode folding, in FAB's users
and in ``user_emails``; the user found is asked of the auth manager (``hitl.airflow_users``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hitl import airflow_users, identity

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
SIMPLE = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
NOT_ALICE = ["a_ice@example.com", "%@example.com", "_lice@example.com", "alice@example.co_", "%", "", "  "]
# Look-alikes that Unicode case folding would map to an ASCII user (KELVIN SIGN K -> k, dotless i, fullwidth a)
LOOK_ALIKES = ["\u212aate@example.com", "al\u0131ce@example.com", "\uff41lice@example.com"]
DAGS = ["outreach"]


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
        found = airflow_users.reviewer_with_email(email, DAGS)
        assert found is not None and found.name == "alice" and found.roles == frozenset({"user"}), email
    for email in NOT_ALICE + LOOK_ALIKES:
        assert airflow_users.reviewer_with_email(email, DAGS) is None, email


@pytest.mark.usefixtures("fab_users")
def test_fab_name_lookup_is_exact() -> None:
    assert airflow_users.asserted_reviewer("alice", DAGS).email == "alice@example.com"
    for name in ("a_ice", "%", "alice%"):
        with pytest.raises(airflow_users.UnknownUser, match="no Airflow user named"):
            airflow_users.asserted_reviewer(name, DAGS)


def test_fab_filter_compares_lowercased_email_with_equality_not_like() -> None:
    from airflow.providers.fab.auth_manager.models import User

    clause = identity.fab_user_filter(User, email="A_ice%@Example.com")
    sql = str(clause.compile(compile_kwargs={"literal_binds": True})).lower()
    assert "like" not in sql
    assert sql == "lower(ab_user.email) = 'a_ice%@example.com'"
    by_name = str(identity.fab_user_filter(User, username="a_ice").compile(compile_kwargs={"literal_binds": True}))
    assert "like" not in by_name.lower() and by_name.endswith("= 'a_ice'")


def test_user_emails_lookup_is_exact_ignoring_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE)
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "alice:user,bob:admin")
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:alice@example.com, bob:bob@example.com")
    found = airflow_users.reviewer_with_email("ALICE@example.com", DAGS)
    assert found is not None and found.name == "alice" and found.roles == frozenset({"user"})
    assert found.dags == frozenset(DAGS)  # SimpleAuthManager lets every role read every DAG
    for email in NOT_ALICE + LOOK_ALIKES:
        assert airflow_users.reviewer_with_email(email, DAGS) is None, email


def test_user_emails_shared_by_two_users_maps_to_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "")
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:team@example.com,bob:TEAM@example.com")
    assert airflow_users.reviewer_with_email("team@example.com", DAGS) is None


def test_readable_dags_are_asked_with_each_dags_team(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's multi-team mode: each DAG's team goes with the question, as Airflow's own API asks it."""
    from airflow.models.dag import DagModel

    asked: list[tuple[frozenset[str], str | None]] = []

    class TeamManager:  # an auth manager that lets this user read team "sales" only
        def filter_authorized_dag_ids(self, *, dag_ids: set[str], user: Any, method: str, team_name: Any) -> set[str]:
            asked.append((frozenset(dag_ids), team_name))
            return set(dag_ids) if team_name == "sales" else set()

    monkeypatch.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
    teams = {"leads": "sales", "quotes": "sales", "payroll": "finance"}
    monkeypatch.setattr(DagModel, "get_dag_id_to_team_name_mapping", staticmethod(lambda ids, **_: teams))
    found = airflow_users.readable_dags("kim", ["leads", "quotes", "payroll", "shared"], manager=TeamManager())
    assert found == frozenset({"leads", "quotes"})
    assert sorted(asked, key=str) == sorted(
        [(frozenset({"leads", "quotes"}), "sales"), (frozenset({"payroll"}), "finance"), (frozenset({"shared"}), None)],
        key=str,
    )
    monkeypatch.setenv("AIRFLOW__CORE__MULTI_TEAM", "False")  # one team for all: no team is asked with
    asked.clear()
    airflow_users.readable_dags("kim", ["leads", "payroll"], manager=TeamManager())
    assert asked == [(frozenset({"leads", "payroll"}), None)]


def test_an_approver_email_matches_only_the_same_ascii_address() -> None:
    from hitl.identity import Reviewer, may_decide, same_address

    kate = [{"email": "kate@example.com"}]
    assert may_decide(Reviewer("kate", "KATE@Example.com", frozenset({"user"})), kate)
    look_alike = Reviewer("mallory", "\u212aate@example.com", frozenset({"user"}))  # KELVIN SIGN: .lower() -> "k"
    assert "\u212aate@example.com".lower() == "kate@example.com"  # the folding this refuses
    assert not may_decide(look_alike, kate)
    assert not same_address("\u212aate@example.com", "kate@example.com")
