"""The one task of a stand-in DAG for a broken spec: running it fails with the spec's errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class InvalidSpecOperator(BaseOperator):
    ui_color = "#fecaca"
    template_fields: Sequence[str] = ()

    def __init__(self, *, errors: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors = errors

    def execute(self, context: Any) -> None:
        for error in self.errors:
            self.log.error("%s", error)
        raise ValueError("the workflow spec is invalid:\n" + "\n".join(self.errors))
