"""Approval gates for Apache Airflow: human-in-the-loop review of a step's output.

The public API for hand-written DAGs::

    from hitl import ApprovalSensor, approved_output

Names are resolved on first use, so importing this package stays cheap for the DAG processor,
the triggerer and the api-server: each only pays for the modules it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ApprovalSensor", "GateNotApproved", "GateOptions", "approved_output", "review_feedback"]

if TYPE_CHECKING:
    from hitl.gate import GateOptions
    from hitl.guard import GateNotApproved, approved_output
    from hitl.rounds import review_feedback
    from hitl.sensor import ApprovalSensor

_LAZY = {
    "ApprovalSensor": "hitl.sensor",
    "GateOptions": "hitl.gate",
    "GateNotApproved": "hitl.guard",
    "approved_output": "hitl.guard",
    "review_feedback": "hitl.rounds",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hitl' has no attribute {name!r}")
