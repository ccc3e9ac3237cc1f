"""The user directory (``hitl.store.directory``) and the approver emails read from it in task code."""

from __future__ import annotations

from typing import Any

import pytest

from hitl.notify.recipients import emails_for
from hitl.store import Store
from hitl.store.directory import DirectoryUser, last_synced, replace_all, users

DAVE = DirectoryUser("dave", "dave@example.com", frozenset({"approvaldecider"}), False, frozenset({"outreach"}))
ROSA = DirectoryUser("rosa", "Rosa@Example.com", frozenset({"approvaldecider"}), False, frozenset({"payroll"}))
ADA = DirectoryUser("ada", "ada@example.com", frozenset({"admin"}), True, frozenset())


@pytest.fixture
def directory(store: Store) -> Store:
    replace_all(store.write_engine, [DAVE, ROSA, ADA])
    return store


def test_replace_all_is_the_whole_directory(directory: Store) -> None:
    assert {u.username for u in users(directory.engine, names=["dave", "ada", "nobody"])} == {"dave", "ada"}
    assert {u.username for u in users(directory.engine, roles=["ApprovalDecider"])} == {"dave", "rosa"}
    assert [u.username for u in users(directory.engine, emails=["ROSA@example.com"])] == ["rosa"]
    assert last_synced(directory.engine) is not None
    replace_all(directory.write_engine, [ADA])  # dave and rosa left Airflow: gone from the directory
    assert [u.username for u in users(directory.engine, names=["dave", "rosa", "ada"])] == ["ada"]
    found = users(directory.engine, names=["ada"])[0]
    assert found.may_read("a-dag-made-later") and not DAVE.may_read("payroll") and DAVE.may_read("outreach")


@pytest.mark.parametrize(
    ("approvers", "dag_id", "expected"),
    [
        ([{"userId": "dave"}], "outreach", ["dave@example.com"]),  # FAB's address, no user_emails needed
        ([{"userId": "dave"}], "payroll", []),  # listed, but may not read the DAG: told nothing
        ([{"role": "ApprovalDecider"}], "outreach", ["dave@example.com"]),  # role members who may read it
        ([{"role": "ApprovalDecider"}], "payroll", ["Rosa@Example.com"]),
        ([{"email": "rosa@example.com"}], "outreach", []),  # a known user by email, who may not read it
        ([{"email": "partner@elsewhere.example"}], "outreach", ["partner@elsewhere.example"]),  # not a user: as given
        ([{"userId": "ada"}, {"userId": "dave"}], "made_later", ["ada@example.com"]),
    ],
)
def test_approver_emails_come_from_the_directory_and_respect_dag_reads(
    directory: Store, monkeypatch: pytest.MonkeyPatch, approvers: list[dict[str, str]], dag_id: str, expected: list[str]
) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "")
    monkeypatch.setenv("AIRFLOW__HITL__FALLBACK_EMAIL", "")
    assert emails_for(approvers, None, dag_id=dag_id, store=directory) == expected


def test_user_emails_stays_an_override(directory: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "dave:dave.work@example.com")
    assert emails_for([{"userId": "dave"}], None, dag_id="outreach", store=directory) == ["dave.work@example.com"]


def test_a_store_without_the_directory_still_sends_by_the_other_sources(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import create_engine

    class Old:  # a store older than migration 0009: the table is missing
        engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")

    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "dave:dave@example.com")
    assert emails_for([{"userId": "dave"}], None, dag_id="outreach", store=Old()) == ["dave@example.com"]
