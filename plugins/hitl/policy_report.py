"""Shadow agreement: before anyone enforces a policy, how often it agreed with the humans who decided.

Over the last N human decisions of a gate with a policy (shadow or enforced: a sampled or held draft still gets a
human), grouped by gate and by rule hash (a changed rule starts a new line): how many drafts the policy would have
decided, how many of those it decided as the human did, the disagreements (each with its request), and the reviews
enforcing it would have saved. The number that matters most is ``approve_reject``: drafts the policy would have let
through that a human rejected.

One report feeds the insights page, ``GET /api/policy`` and ``python -m hitl policy report``: the same figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from hitl.store.policy_reads import JudgedRow, judged

MAX_LISTED = 50  # disagreements listed per gate (all are counted)
DEFAULT_LAST = 200


def human_word(row: JudgedRow) -> str:
    """What the human did, in the policy's terms: approve, edited (approved after an edit), reject, changes."""
    if row.status == "approved":
        return "edited" if row.edited else "approve"
    if row.status == "rejected":
        return "reject"
    return "changes" if row.status == "changes_requested" else row.status


@dataclass
class GateAgreement:
    """The figures of one gate under one rule (``rule_hash``)."""

    dag_id: str
    step_id: str
    rule_hash: str
    mode: str  # of the newest verdict
    decisions: int = 0  # human decisions on drafts with a verdict
    would_decide: int = 0  # drafts the policy had an approve or reject verdict on
    agreed: int = 0
    left_to_human: int = 0  # no rule matched, or undecided
    saved: int = 0  # reviews enforcing it would have saved (not sampled, not held)
    pairs: Counter[str] = field(default_factory=Counter)  # "<verdict>_<human>" of every disagreement
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def disagreed(self) -> int:
        return self.would_decide - self.agreed

    @property
    def approve_reject(self) -> int:
        """Drafts the policy would have sent that a person rejected."""
        return self.pairs["approve_reject"]

    @property
    def reject_approve(self) -> int:
        """Drafts the policy would have rejected that a person approved (as drafted or edited)."""
        return self.pairs["reject_approve"] + self.pairs["reject_edited"]

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.would_decide if self.would_decide else None

    def add(self, row: JudgedRow) -> None:
        self.decisions += 1
        if row.verdict == "none":
            self.left_to_human += 1
            return
        self.would_decide += 1
        if not row.sampled and row.held is None:
            self.saved += 1
        human = human_word(row)
        if human == row.verdict:
            self.agreed += 1
            return
        pair = f"{row.verdict}_{human}"
        self.pairs[pair] += 1
        if len(self.disagreements) < MAX_LISTED:
            self.disagreements.append(
                {
                    "request_id": row.request_id,
                    "policy": row.verdict,
                    "human": human,
                    "decided_by": row.decided_by,
                    "decided_at": row.decided_at.isoformat() if row.decided_at else None,
                }
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "step_id": self.step_id,
            "rule_hash": self.rule_hash,
            "mode": self.mode,
            "decisions": self.decisions,
            "would_decide": self.would_decide,
            "agreed": self.agreed,
            "disagreed": self.disagreed,
            "agreement": None if self.agreement is None else round(self.agreement, 4),
            "approve_reject": self.approve_reject,
            "approve_changes": self.pairs["approve_changes"],
            "approve_edited": self.pairs["approve_edited"],
            "reject_approve": self.reject_approve,
            "left_to_human": self.left_to_human,
            "saved": self.saved,
            "disagreements": self.disagreements,
        }


def report(
    store: Any,
    *,
    last: int = DEFAULT_LAST,
    dag_id: str | None = None,
    step_id: str | None = None,
    dag_ids: Collection[str] | None = None,
) -> list[GateAgreement]:
    """Per gate and rule, over the last ``last`` human decisions on drafts with a verdict (newest rule first)."""
    rows = judged(store.engine, last=last, dag_id=dag_id, step_id=step_id, dag_ids=dag_ids)
    return agreement(rows)


def agreement(rows: list[JudgedRow]) -> list[GateAgreement]:
    """The figures from the rows (newest first); pure, so it is tested on its own."""
    gates: dict[tuple[str, str, str], GateAgreement] = {}
    for row in rows:
        key = (row.dag_id, row.step_id, row.rule_hash)
        if key not in gates:
            gates[key] = GateAgreement(dag_id=row.dag_id, step_id=row.step_id, rule_hash=row.rule_hash, mode=row.mode)
        gates[key].add(row)
    return list(gates.values())
