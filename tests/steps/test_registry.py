"""One registry of step types: every type has a module that runs it, a config model, and an output kind."""

from __future__ import annotations

import pytest

from hitl.spec.schema import STEP_CONFIGS
from hitl.steps import STEP_TYPES, output_kind, step_module


@pytest.mark.parametrize("name", sorted(STEP_TYPES))
def test_each_step_type_is_complete(name: str) -> None:
    assert callable(step_module(name).run)
    assert STEP_CONFIGS[name].__name__ == STEP_TYPES[name].config_model
    assert output_kind(name, {}) in ("research", "email", "text", "json")


def test_the_spec_schema_knows_exactly_the_registered_types() -> None:
    assert set(STEP_CONFIGS) == set(STEP_TYPES)


def test_ai_action_output_kind_follows_its_config() -> None:
    assert output_kind("aiAction", {"output": "email"}) == "email"
    assert output_kind("aiAction", {"output": "text"}) == "text"
