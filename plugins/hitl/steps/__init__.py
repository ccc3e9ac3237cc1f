"""Step types: the one registry. Each type names its module (``run(config, context) -> output``), its
config model in ``hitl.spec.schema``, and the kind of output it makes (what a reviewer may edit).

Modules are imported when a step runs, never at DAG-parse time; the spec schema and the factory
read this registry without importing them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class StepType:
    """A step type: where it runs, how its config is checked, what it outputs."""

    module: str
    config_model: str  # a class name in hitl.spec.schema
    output_kind: Callable[[dict[str, Any]], str]


STEP_TYPES: dict[str, StepType] = {
    "webResearch": StepType("hitl.steps.web_research", "WebResearchConfig", lambda config: "research"),
    "aiAction": StepType(
        "hitl.steps.ai_action",
        "AiActionConfig",
        lambda config: "email" if config.get("output") == "email" else "text",
    ),
    "email": StepType("hitl.steps.email", "EmailConfig", lambda config: "json"),
    "python": StepType("hitl.steps.python", "PythonConfig", lambda config: "json"),
}


def output_kind(step_type: str, config: dict[str, Any]) -> str:
    """The kind of output a step of this type makes (the factory needs it at parse time)."""
    return STEP_TYPES[step_type].output_kind(config)


def step_module(step_type: str) -> ModuleType:
    """The module that runs a step of this type (imported on first use, on the worker)."""
    return importlib.import_module(STEP_TYPES[step_type].module)
