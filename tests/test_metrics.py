"""Gate metrics reach a real StatsD listener on loopback through Airflow's own metrics backend ([metrics])."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from helpers import gate
from hitl import metrics as hitl_metrics
from hitl.decisions import NotAllowed, decide
from hitl.identity import Reviewer
from hitl.metrics import part
from hitl.monitor import sweep
from hitl.store import Store, utcnow

ALICE = Reviewer("alice", email="alice@example.com", roles=frozenset({"user"}))
BOB = Reviewer("bob", roles=frozenset({"user"}))

pytest.importorskip("statsd", reason="StatsD metrics need the statsd package (the `metrics` extra; in the test lock)")


class StatsdListener:
    """A UDP socket on loopback that keeps every StatsD line it receives (``name:value|type[|@rate]``)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.lines.extend(data.decode().splitlines())

    def wait_for(self, wanted: str, timeout: float = 10) -> list[str]:
        """Every line so far whose name is ``wanted``, waiting until there is one (or failing at the deadline)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if line.split(":", 1)[0] == wanted]
            if found:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no StatsD line for {wanted!r} within {timeout}s; got {self.lines}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    """Airflow's [metrics] pointed at a listener, and the process's metrics backend built anew from it."""
    listener = StatsdListener()
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    hitl_metrics.airflow_logger.cache_clear()
    try:
        yield listener
    finally:
        hitl_metrics.airflow_logger.cache_clear()
        listener.close()


def test_a_decision_is_counted_per_outcome_channel_and_workflow_and_timed(
    sqlite_store: Store, statsd: StatsdListener
) -> None:
    req, _ = sqlite_store.record_request(gate(dag_id="shop.outreach"))
    decide(sqlite_store, req.id, ALICE, "approve", channel="ui")
    assert statsd.wait_for("airflow.hitl.decision.approved") == ["airflow.hitl.decision.approved:1|c"]
    assert statsd.wait_for("airflow.hitl.decision.approved.ui")
    # A dot in a DAG id would add a level to the name: it becomes _
    assert statsd.wait_for("airflow.hitl.workflow.shop_outreach.decision.approved")
    (timing,) = statsd.wait_for("airflow.hitl.decision_time")
    assert timing.endswith("|ms") and float(timing.split(":")[1].split("|")[0]) >= 0


def test_an_edit_a_rejection_and_a_refusal_have_their_own_names(sqlite_store: Store, statsd: StatsdListener) -> None:
    edited, _ = sqlite_store.record_request(gate())
    decide(sqlite_store, edited.id, ALICE, "approve", edited_output={**edited.output, "subject": "Hi"}, channel="api")
    assert statsd.wait_for("airflow.hitl.decision.edited.api")
    rejected, _ = sqlite_store.record_request(gate(run_id="r2"))
    decide(sqlite_store, rejected.id, ALICE, "reject", comment="wrong shop", channel="slack")
    assert statsd.wait_for("airflow.hitl.decision.rejected.slack")
    refused, _ = sqlite_store.record_request(gate(run_id="r3"))
    with pytest.raises(NotAllowed):
        decide(sqlite_store, refused.id, BOB, "approve", channel="ui")
    assert statsd.wait_for("airflow.hitl.decision_refused.not_allowed")
    assert not [line for line in statsd.lines if line.startswith("airflow.hitl.decision.approved")]


def test_the_monitor_sends_pending_gauges_and_counts_an_expiry(sqlite_store: Store, statsd: StatsdListener) -> None:
    sqlite_store.record_request(gate(dag_id="a"))
    sqlite_store.record_request(gate(dag_id="a", run_id="r2"))
    sqlite_store.record_request(gate(dag_id="b", expire_after=60))
    done = sweep(store=sqlite_store, now=utcnow() + timedelta(minutes=5))
    assert len(done["expired"]) == 1
    assert statsd.wait_for("airflow.hitl.decision.expired.expiry")
    assert statsd.wait_for("airflow.hitl.workflow.a.pending") == ["airflow.hitl.workflow.a.pending:2|g"]
    assert statsd.wait_for("airflow.hitl.pending") == ["airflow.hitl.pending:2|g"]
    assert not [line for line in statsd.lines if line.startswith("airflow.hitl.workflow.b.pending")]


def test_a_notification_is_counted_sent_or_failed(
    sqlite_store: Store, statsd: StatsdListener, smtp_server: Any
) -> None:
    from hitl.notify import notify_requested

    req, _ = sqlite_store.record_request(gate(approvers=[{"email": "alice@example.com"}]))
    outcome = notify_requested(req, store=sqlite_store)
    assert outcome.get("email") == "sent", outcome
    assert statsd.wait_for("airflow.hitl.notification.sent.email")


def test_metrics_off_by_default_send_nothing_and_never_fail_a_decision(sqlite_store: Store) -> None:
    hitl_metrics.airflow_logger.cache_clear()
    try:
        req, _ = sqlite_store.record_request(gate())
        assert decide(sqlite_store, req.id, ALICE, "approve").final
        assert type(hitl_metrics.airflow_logger()).__name__ == "NoStatsLogger"
    finally:
        hitl_metrics.airflow_logger.cache_clear()


def test_a_broken_backend_is_dropped_not_raised(sqlite_store: Store) -> None:
    class Down:
        def incr(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("agent unreachable")

        gauge = timing = incr

    req, _ = sqlite_store.record_request(gate())
    decided = decide(sqlite_store, req.id, ALICE, "approve").request
    hitl_metrics.Metrics(logger=Down()).decided(decided, "ui")  # no exception


def test_name_parts_and_outcomes() -> None:
    assert part("team.a/outreach v2") == "team_a_outreach_v2"
    assert part("") == "_"


def test_policy_verdicts_decisions_and_disagreements(statsd: StatsdListener, sqlite_store: Store) -> None:
    from hitl.decisions import decide_by_policy
    from hitl.metrics import metrics
    from hitl.policy import GatePolicy

    policy = GatePolicy.parse({"mode": "enforce", "approveWhen": {"path": "output.to", "matches": "shop"}})
    verdict = policy.verdict({"output": gate().output, "steps": {}, "params": {}}, sample_key="k")
    auto, _ = sqlite_store.record_request(gate(run_id="auto", verdict=verdict))
    metrics.verdict(verdict, auto.dag_id)  # the sensor counts each new draft's verdict
    decide_by_policy(sqlite_store, auto, verdict)
    statsd.wait_for("airflow.hitl.policy.verdict.approve.enforce")
    statsd.wait_for("airflow.hitl.policy.decision.approve")
    statsd.wait_for("airflow.hitl.decision.approved.policy")

    shadow = GatePolicy.parse({"approveWhen": {"path": "output.to", "matches": "shop"}})
    seen = shadow.verdict({"output": gate().output, "steps": {}, "params": {}}, sample_key="k")
    first, _ = sqlite_store.record_request(gate(run_id="agree", verdict=seen))
    decide(sqlite_store, first.id, ALICE, "approve")
    statsd.wait_for("airflow.hitl.policy.agreement")
    second, _ = sqlite_store.record_request(gate(run_id="disagree", verdict=seen))
    decide(sqlite_store, second.id, ALICE, "reject", comment="off-tone")
    statsd.wait_for("airflow.hitl.policy.disagreement")
    statsd.wait_for("airflow.hitl.policy.disagreement.approve_reject")
