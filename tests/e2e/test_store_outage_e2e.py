"""A store outage never fails an approved run (issue 18, item 6), on a real Airflow.

The decision store is a PostgreSQL database that every Airflow component reaches through a TCP proxy the test
controls (``hitl_devstack.tcpproxy``; the machine's PostgreSQL itself is shared and never stopped). Two gates are
approved and one sent back with feedback; the same moment the proxy goes down, so the steps that follow (the
email steps after the approved gates, the re-run draft that reads its review rounds) start while the store is
unreachable. They wait it out (logged once), then act exactly once: one email per approved run, the re-run draft
answers the feedback, no run fails. The decisions themselves are written by the CLI on a direct connection to the
store (the proxy only cuts the components off): "approved just before the outage" without a race on when.
Needs HITL_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from helpers import wait_for
from hitl.store import Store
from hitl_devstack import REPO, AirflowStack, free_port, fresh_postgres_database
from hitl_devstack.tcpproxy import TcpProxy

pytestmark = pytest.mark.e2e
DAG = "outage_email"
GATE = "draft__approval"
WAITING = "The decision store is unavailable"
BACK = "The decision store is back after"


class Inbox:
    """What the SMTP server on loopback (aiosmtpd) received."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import email
        from email import policy

        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


class OutageStack:
    def __init__(self, stack: AirflowStack, store_url: str, proxy: TcpProxy, inbox: Any) -> None:
        self.stack, self.store, self.proxy, self.inbox = stack, Store(store_url), proxy, inbox
        self.store_url = store_url

    def pending(self, run_id: str, revision: int = 1) -> Any:
        if self.stack.task_state(DAG, run_id, GATE) != "deferred":
            return None
        req = self.store.current_for_gate(DAG, run_id, GATE)
        return req if req is not None and req.status == "pending" and req.revision == revision else None

    def cli(self, *args: str) -> str:
        """``python -m hitl approvals ...`` on a direct connection to the store (past the proxy)."""
        done = subprocess.run(
            [sys.executable, "-m", "hitl", "approvals", *args],
            env={**self.stack.env(), "AIRFLOW__HITL__STORE_URL": self.store_url},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def task_log(self, run_id: str, task_id: str) -> str:
        base = self.stack.home / "logs" / f"dag_id={DAG}" / f"run_id={run_id}" / f"task_id={task_id}"
        return "".join(p.read_text(errors="replace") for p in sorted(base.glob("attempt=*.log")))

    def waiting(self, run_id: str, task_id: str) -> bool:
        """True once the task logged its wait for the store; a task that failed instead fails the test now."""
        if WAITING in self.task_log(run_id, task_id):
            return True
        state = self.stack.task_state(DAG, run_id, task_id)
        assert state not in ("failed", "up_for_retry", "upstream_failed"), self.task_log(run_id, task_id)[-3000:]
        return False

    def tries(self, run_id: str, task_id: str) -> int:
        base = self.stack.home / "logs" / f"dag_id={DAG}" / f"run_id={run_id}" / f"task_id={task_id}"
        return len(list(base.glob("attempt=*.log")))

    def emails(self, run_id: str) -> list[Any]:
        return [m for m in self.inbox.messages if f" of {run_id}" in str(m["Subject"])]


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageStack]:
    import json

    from aiosmtpd.controller import Controller

    server = os.environ.get("HITL_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("needs HITL_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    home: Path = tmp_path_factory.mktemp("airflow-outage")
    specs = home / "workflow_specs"
    specs.mkdir()
    (specs / "outage_email.yaml").write_text((REPO / "tests" / "specs" / "outage" / "outage_email.yaml").read_text())
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    conn = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": smtp.port,
        "extra": {"disable_ssl": True, "disable_tls": True},
    }
    with fresh_postgres_database(server, "hitl_outage_store") as store_url:
        url = make_url(store_url)
        proxy = TcpProxy(target=(url.host or "127.0.0.1", url.port or 5432)).up()
        through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        stack = AirflowStack(
            home=home,
            port=free_port(),
            specs_folder=specs,
            extra_env={
                "AIRFLOW__HITL__STORE_URL": through_proxy,
                "AIRFLOW__HITL__POLL_INTERVAL": "0.5",
                "AIRFLOW_CONN_SMTP_TEST": json.dumps(conn),
            },
        )
        outage = OutageStack(stack, store_url, proxy, inbox)
        try:
            stack.setup()
            stack.start()
            stack.wait_healthy()
            stack.wait_for_dag(DAG)
            yield outage
        finally:
            stack.stop()
            proxy.close()
            outage.store.engine.dispose()
            smtp.stop()


def test_steps_after_a_decision_wait_out_a_store_outage_and_act_once(outage_stack: OutageStack) -> None:
    o = outage_stack
    approved, sent_back = ["outage_a", "outage_b"], "outage_c"
    runs = [*approved, sent_back]
    for run_id in runs:
        o.stack.trigger(DAG, {}, run_id=run_id)
    reqs = {r: wait_for(f"{r}'s gate parked", lambda r=r: o.pending(r), 240) for r in runs}  # type: ignore[misc]

    o.proxy.down()  # from here on no Airflow component reaches the store
    for run_id in approved:
        assert "ended at once" in o.cli("approve", str(reqs[run_id].id), "--user", "alice")
    o.cli("request-changes", str(reqs[sent_back].id), "--user", "alice", "--feedback", "Shorter please")

    # Each step that needs the store started during the outage and waits for it, logged once.
    waiting = [(r, "send_email") for r in approved] + [(sent_back, "draft")]
    for run_id, task in waiting:
        wait_for(f"{run_id}/{task} waiting for the store", lambda r=run_id, t=task: o.waiting(r, t), 240)  # type: ignore[misc]
    assert o.inbox.messages == []  # nothing acted without reading its approval
    assert all(o.stack.task_state(DAG, r, t) == "running" for r, t in waiting)

    o.proxy.up()
    for run_id in approved:
        assert o.stack.wait_run(DAG, run_id, timeout=300) == "success"
        assert len(o.emails(run_id)) == 1, [str(m["Subject"]) for m in o.inbox.messages]
    second = wait_for("the re-run draft's gate parked", lambda: o.pending(sent_back, revision=2), 300)
    assert second.output["body"] == "Feedback: Shorter please"  # it read its review round after the outage
    o.cli("approve", str(second.id), "--user", "alice")
    assert o.stack.wait_run(DAG, sent_back, timeout=300) == "success"
    sent = o.emails(sent_back)
    assert len(sent) == 1 and "Shorter please" in sent[0].get_body().get_content()

    for run_id, task in waiting:
        log = o.task_log(run_id, task)
        assert log.count(WAITING) == 1 and log.count(BACK) == 1, log[-3000:]
    # Waited in the try that started during the outage, never failed: one try per email step; the draft's
    # second try is the re-run that "request changes" asked for.
    assert [o.tries(r, "send_email") for r in runs] == [1, 1, 1]
    assert o.tries(sent_back, "draft") == 2
    assert len(o.inbox.messages) == 3
