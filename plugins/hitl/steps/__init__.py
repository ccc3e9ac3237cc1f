"""Step types. Each module has ``run(config, context) -> output`` and ``output_kind(config)``.

Modules are imported when a step runs, never at DAG-parse time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STEP_MODULES = {
    "webResearch": "hitl.steps.web_research",
    "aiAction": "hitl.steps.ai_action",
    "email": "hitl.steps.email",
    "python": "hitl.steps.python",
}


# Output kinds without importing the step modules (the factory needs them at parse time).
def output_kind(step_type: str, config: dict) -> str:
    if step_type == "aiAction":
        return "email" if config.get("output") == "email" else "text"
    if step_type == "webResearch":
        return "research"
    return "json"


def step_module(step_type: str) -> ModuleType:
    return importlib.import_module(STEP_MODULES[step_type])
