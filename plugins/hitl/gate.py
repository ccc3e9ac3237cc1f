"""One object per gate: everything a gate is configured with, carried from spec to sensor to store.

A spec's ``next.conditions`` becomes a ``GateOptions`` in the factory; a hand-written DAG builds
one through ``ApprovalSensor``'s keyword arguments. The sensor hands it to the store unchanged
(``GateRequest.options``), so a new option is added here, in the spec model, and in one migration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hitl.policy import GatePolicy

MAX_REVISIONS = 20  # the most rounds of "request changes" a gate may allow


@dataclass(frozen=True)
class GateOptions:
    """How a gate decides, whom it tells, and how long it waits. Durations are seconds; None means never."""

    approve_label: str = "Approve"
    approvers: list[dict[str, str]] = field(default_factory=list)  # {userId|email|role: value}; none: admins decide
    min_approvals: int = 1
    allow_self_approval: bool = True
    output_kind: str | None = None  # email | text | research | json; None: detected from the output
    timeout: int | None = None  # the gate task fails after it; its request closes as timed out
    expire_after: int | None = None  # an unanswered request is rejected (never approved) after it
    remind_after: int | None = None
    escalate_after: int | None = None
    escalate_to: list[dict[str, str]] = field(default_factory=list)
    notify: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    poll_interval: float | None = None  # the trigger's safety poll; None: ``[hitl] poll_interval``
    max_revisions: int = 3  # how many times a reviewer may send the draft back with feedback (0: never)
    # Rules that decide the draft (mode enforce) or record what they would have decided (shadow): hitl.policy.
    # A mapping as in a spec (``{"approveWhen": ..., "mode": ...}``) is parsed here, so a bad rule fails the DAG file.
    policy: GatePolicy | None = None
    # Ungated steps (task ids) whose outputs the steps after this gate read: recorded with the request, shown to
    # the reviewer, and checked before those steps act (hitl.guard); a spec's gates get them from the factory.
    binds: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from hitl.policy import coerce

        object.__setattr__(self, "policy", coerce(self.policy))
        if not isinstance(self.min_approvals, int) or self.min_approvals < 1:
            raise ValueError(f"min_approvals must be a whole number >= 1, not {self.min_approvals!r}")
        if not isinstance(self.max_revisions, int) or isinstance(self.max_revisions, bool):
            raise ValueError(f"max_revisions must be a whole number from 0 to 20, not {self.max_revisions!r}")
        if not 0 <= self.max_revisions <= MAX_REVISIONS:
            raise ValueError(f"max_revisions must be a whole number from 0 to 20, not {self.max_revisions!r}")
        for name in ("timeout", "expire_after", "remind_after", "escalate_after"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        for entry in [*self.approvers, *self.escalate_to]:
            if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in ("userId", "email", "role"):
                raise ValueError(f"an approver is one of {{userId|email|role: value}}, not {entry!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain values, e.g. for a log line or a JSON answer."""
        values = asdict(self)
        values["policy"] = dict(self.policy.raw) if self.policy is not None else None
        return values

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, which ``ApprovalSensor`` also takes as keyword arguments."""
        return tuple(f.name for f in fields(cls))
