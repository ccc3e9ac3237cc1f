"""Gate metrics, sent through Airflow's own metrics backend (StatsD, Datadog or OpenTelemetry, as ``[metrics]`` sets).

Why a logger of our own making rather than Airflow's ``Stats``: Airflow initializes its ``Stats`` singleton per
component (api-server, scheduler, task runner), in two copies (core's and the task SDK's), and the CLI initializes
neither. A logger built from Airflow's own factory (``stats_utils.get_stats_factory``) sends to the backend the
deployment configured, with its prefix, allow and block lists and name checks, in every process that decides or
notifies, without reaching into either singleton. With metrics off (Airflow's default) the factory gives Airflow's
``NoStatsLogger`` and nothing is sent.

Names (after ``[metrics] statsd_prefix``, ``airflow.`` by default). Plain StatsD drops tags, so what a tag says is also
in a name, the way Airflow's own names carry ``dag_id``; tag-aware backends (OpenTelemetry, Datadog, InfluxDB-style
StatsD) get the tags ``workflow``, ``outcome``, ``channel``:

- ``hitl.decision.<outcome>`` (counter): a request closed; outcome ``approved``, ``edited``, ``rejected``,
  ``changes_requested``, ``expired``, ``timed_out``; ``hitl.decision.<outcome>.<channel>`` per channel (``ui``,
  ``api``, ``slack``, ``cli``, ``expiry``, ...); ``hitl.workflow.<workflow>.decision.<outcome>`` per workflow.
- ``hitl.decision_time`` (timer): from the request's creation to its decision; also per workflow.
- ``hitl.decision_refused.<code>`` (counter): a refused decision (``already_decided``, ``not_allowed``, ``stale``, ...).
- ``hitl.pending`` and ``hitl.workflow.<workflow>.pending`` (gauges): pending requests, sent by each monitor sweep.
- ``hitl.notification.<sent|failed>.<channel>`` (counter): one notification attempt.
- ``hitl.policy.verdict.<approve|reject|none>.<shadow|enforce>`` (counter): a gate policy's verdict on a new draft.
- ``hitl.policy.decision.<approve|reject>`` (counter): an enforced policy decided a draft (also
  ``hitl.decision.<outcome>.policy``).
- ``hitl.policy.agreement`` and ``hitl.policy.disagreement`` (counters): a human decided a draft the policy had a
  verdict on, the same way or not; ``hitl.policy.disagreement.<verdict>_<human>`` says which way (the one that
  matters: ``approve_reject``, the policy would have sent what a human refused).

The README's "Metrics" section is the table operators read.

A metric is never a reason for a decision or a notification to fail: a backend that cannot be built or reached is
logged once and dropped.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from hitl.store import APPROVED, CHANGES_REQUESTED, EXPIRY_ACTOR, REJECTED, TIMED_OUT, ApprovalRequest

if TYPE_CHECKING:
    from hitl.policy import Verdict

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")  # a dot would add a level to a StatsD name: DAG ids may hold dots


class StatsLogger(Protocol):
    """What Airflow's stats loggers (``SafeStatsdLogger``, ``SafeDogStatsdLogger``, ``SafeOtelLogger``) answer."""

    def incr(self, stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, str] | None = None) -> None: ...

    def gauge(
        self, stat: str, value: float, rate: float = 1, delta: bool = False, *, tags: dict[str, str] | None = None
    ) -> None: ...

    def timing(self, stat: str, dt: Any, *, tags: dict[str, str] | None = None) -> None: ...


@functools.cache
def airflow_logger() -> StatsLogger | None:
    """The backend ``[metrics]`` configures, built once per process; None when it cannot be built."""
    try:
        from airflow.observability.metrics.stats_utils import get_stats_factory

        logger: StatsLogger = get_stats_factory()()
        return logger
    except Exception as exc:  # a misconfigured backend must not stop a decision
        log.warning("hitl: metrics are off: Airflow's metrics backend could not be built: %s", exc)
        return None


def part(value: str) -> str:
    """One level of a metric name: a workflow id or channel with anything but letters, digits, ``_`` and ``-`` as _."""
    return _UNSAFE.sub("_", value)[:100] or "_"


def outcome_of(req: ApprovalRequest) -> str:
    """The outcome word of a closed request (an edit is ``edited``, a rejection by the deadline ``expired``)."""
    if req.status == APPROVED:
        return "edited" if req.edited_output is not None else "approved"
    if req.status == REJECTED:
        return "expired" if req.decided_by == EXPIRY_ACTOR else "rejected"
    if req.status in (CHANGES_REQUESTED, TIMED_OUT):
        return req.status
    return part(req.status)


class Metrics:
    """Sends the gate metrics named in this module's docstring; ``logger`` is the seam (default: Airflow's backend)."""

    def __init__(self, *, logger: StatsLogger | None = None) -> None:
        self._logger = logger

    @property
    def logger(self) -> StatsLogger | None:
        return self._logger if self._logger is not None else airflow_logger()

    def _send(self, kind: str, stat: str, value: Any, tags: Mapping[str, str]) -> None:
        logger = self.logger
        if logger is None:
            return
        try:
            if kind == "incr":
                logger.incr(stat, int(value), tags=dict(tags))
            elif kind == "gauge":
                logger.gauge(stat, value, tags=dict(tags))
            else:
                logger.timing(stat, value, tags=dict(tags))
        except Exception as exc:  # an unreachable agent, a rejected name: never the caller's failure
            log.debug("hitl: metric %s not sent: %s", stat, exc)

    def decided(self, req: ApprovalRequest, channel: str) -> None:
        """A request closed (by a reviewer, the deadline or the gate's timeout): count it and time it."""
        outcome, workflow, via = outcome_of(req), part(req.dag_id), part(channel)
        tags = {"workflow": req.dag_id, "outcome": outcome, "channel": channel}
        self._send("incr", f"hitl.decision.{outcome}", 1, tags)
        self._send("incr", f"hitl.decision.{outcome}.{via}", 1, tags)
        self._send("incr", f"hitl.workflow.{workflow}.decision.{outcome}", 1, tags)
        if req.decided_at is not None:
            took: timedelta = req.decided_at - req.created_at
            self._send("timing", "hitl.decision_time", took, tags)
            self._send("timing", f"hitl.workflow.{workflow}.decision_time", took, tags)

    def refused(self, code: str, channel: str) -> None:
        """A decision was refused; ``code`` is the refusal's kind (``DecisionError.code``)."""
        self._send("incr", f"hitl.decision_refused.{part(code)}", 1, {"channel": channel, "code": code})

    def pending(self, by_workflow: Mapping[str, int]) -> None:
        """The pending requests now, per workflow and in all."""
        self._send("gauge", "hitl.pending", sum(by_workflow.values()), {})
        for workflow, n in by_workflow.items():
            self._send("gauge", f"hitl.workflow.{part(workflow)}.pending", n, {"workflow": workflow})

    def notification(self, channel: str, *, sent: bool) -> None:
        """One notification attempt's result on one channel."""
        result = "sent" if sent else "failed"
        self._send("incr", f"hitl.notification.{result}.{part(channel)}", 1, {"channel": channel, "result": result})

    def verdict(self, verdict: Verdict, workflow: str) -> None:
        """A gate policy's verdict on a new draft (shadow or enforced)."""
        tags = {"workflow": workflow, "mode": verdict.mode, "verdict": verdict.decision}
        self._send("incr", f"hitl.policy.verdict.{part(verdict.decision)}.{part(verdict.mode)}", 1, tags)

    def policy(self, verdict: Verdict, *, human: str | None) -> None:
        """An enforced policy decided (``human`` None), or a human decided a draft the policy had a verdict on."""
        if human is None:
            self._send("incr", f"hitl.policy.decision.{part(verdict.decision)}", 1, {"mode": verdict.mode})
            return
        if verdict.decision == "none":
            return
        tags = {"verdict": verdict.decision, "human": human, "mode": verdict.mode}
        if verdict.decision == human:
            self._send("incr", "hitl.policy.agreement", 1, tags)
            return
        self._send("incr", "hitl.policy.disagreement", 1, tags)
        self._send("incr", f"hitl.policy.disagreement.{part(verdict.decision)}_{part(human)}", 1, tags)


metrics = Metrics()
