"""python: call a function by dotted path (``pkg.mod.func`` or ``pkg.mod:func``) with the step's kwargs."""

from __future__ import annotations

import importlib
from typing import Any


def run(config: dict[str, Any], context: Any = None) -> Any:
    target = config["callable"]
    module_name, _, attr = target.replace(":", ".").rpartition(".")
    func = getattr(importlib.import_module(module_name), attr)
    return func(**config.get("kwargs", {}))
