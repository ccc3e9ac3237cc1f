"""Builders shared by the tests."""

from __future__ import annotations

from typing import Any


def gate(**overrides: Any) -> Any:
    """A GateRequest for an email draft, as the sensor would make it."""
    from hitl.store import GateRequest

    values = {
        "dag_id": "outreach",
        "run_id": "manual__1",
        "step_id": "draft_email",
        "gate_task_id": "draft_email__approval",
        "output": {
            "from": "Sam <sam@acme.example>",
            "to": "owner@shop.example",
            "subject": "Hello",
            "body": "Hi there",
        },
        "output_kind": "email",
        "summary": "To owner@shop.example: Hello",
        "approve_label": "Send email",
        "approvers": [{"userId": "alice"}],
    }
    values.update(overrides)
    from hitl.gate import GateOptions

    options = {k: values.pop(k) for k in list(values) if k in GateOptions.names() and k != "output_kind"}
    return GateRequest(**values, options=GateOptions(**options))


async def first_event(trigger: Any, timeout: float = 20) -> Any:
    """The first event a trigger yields (what the triggerer would act on)."""
    import asyncio

    agen = trigger.run()
    try:
        return await asyncio.wait_for(agen.__anext__(), timeout)
    finally:
        await agen.aclose()


async def wait_until(condition: Any, timeout: float = 30, interval: float = 0.02) -> None:
    """Wait for ``condition()`` to hold, with a deadline: never a fixed sleep followed by an exact count."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def dead_smtp_connection() -> str:
    """An Airflow SMTP connection (JSON) to a loopback port nobody listens on, failing fast."""
    import json

    extra = {"disable_ssl": True, "disable_tls": True, "retry_limit": 1, "timeout": 2}
    return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": 9, "extra": extra})
