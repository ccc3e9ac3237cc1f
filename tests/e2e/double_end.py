"""Ends one parked gate by both routes at the same moment, in the interleaving that used to crash the triggerer.

Run by ``test_gate_routes_e2e.py`` inside an ``AirflowStack``'s environment (Airflow's database on PostgreSQL,
the stack's triggerer stopped so nothing else ends the gate): ``python double_end.py REQUEST_ID`` prints one
JSON line with what each route did.

The two routes are the real code: the trigger's route is ``Trigger.submit_event`` with the event
``ApprovalTrigger`` yields (what Airflow's triggerer calls for every event, in its main loop), the deciding
process's route is ``DirectRoute.end``. Each runs in its own thread on its own connection. The order is
forced with SQLAlchemy's cursor and commit events (a public seam, nothing of either route is replaced):

1. the trigger's route selects the deferred task instance, then waits until the direct route holds the gate's
   row (it has run its ``SELECT ... FOR UPDATE``);
2. before every commit of the direct route, it waits until the trigger's route is blocked on a lock in
   PostgreSQL (or has finished): both are in flight on the same gate at that moment;
3. before the trigger's route inserts an XCom, it waits until the direct route has inserted the same key (or
   has finished): if their writes could overlap, they do.

Before the fix the direct route committed halfway (Airflow's ``ti.xcom_push`` commits the scoped session) and
wrote ``return_value`` in a second transaction: step 3 then made the trigger's insert collide with it
(``UniqueViolation`` out of ``submit_event``, which in the triggerer ends its process).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from typing import Any

DEADLINE = 60.0  # seconds any one wait may take; a wait that runs out is reported, never hidden


def main(request_id: int) -> dict[str, Any]:
    os.environ["AIRFLOW__HITL__END_GATE_FROM_DECIDER"] = "false"  # the decision is written first, ended below
    import psycopg2
    from airflow import settings
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.models.xcom import XComModel
    from sqlalchemy import event, select

    from hitl.decisions import decide
    from hitl.gate_end import DirectRoute, GateEnd, decode_gate_xcom
    from hitl.identity import Reviewer
    from hitl.store import get_store

    store = get_store()
    outcome = decide(store, request_id, Reviewer("alice"), "approve", channel="cli")
    req = outcome.request
    assert not outcome.gate_ended
    os.environ["AIRFLOW__HITL__END_GATE_FROM_DECIDER"] = "true"

    with settings.Session() as s:  # type: ignore[misc]
        ti = s.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == req.dag_id,
                TaskInstance.run_id == req.run_id,
                TaskInstance.task_id == req.gate_task_id,
            )
        ).one()
        trigger_id, state_before = ti.trigger_id, ti.state
    assert state_before == "deferred" and trigger_id is not None, (state_before, trigger_id)

    engine = settings.engine
    dsn = engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg2://", "postgresql://")  # type: ignore[union-attr]
    roles: dict[int, str] = {}  # thread id -> "trigger" | "direct"
    pids: dict[str, int] = {}
    locked = threading.Event()  # the direct route holds the gate's row
    inserted: dict[str, set[str]] = {"trigger": set(), "direct": set()}
    done = {"trigger": threading.Event(), "direct": threading.Event()}
    waits: list[str] = []
    timeouts: list[str] = []

    def role() -> str | None:
        return roles.get(threading.get_ident())

    def wait(what: str, check: Any) -> None:
        deadline = time.monotonic() + DEADLINE
        while not check():
            if time.monotonic() > deadline:
                timeouts.append(what)
                return
            time.sleep(0.02)
        waits.append(what)

    def blocked_on_lock(pid: int) -> bool:
        conn = psycopg2.connect(dsn)
        try:
            with conn.cursor() as cur:
                cur.execute("select wait_event_type from pg_stat_activity where pid = %s", (pid,))
                row = cur.fetchone()
                return bool(row and row[0] == "Lock")
        finally:
            conn.close()

    def xcom_key(statement: str, parameters: Any) -> str | None:
        if not statement.lstrip().upper().startswith("INSERT INTO XCOM"):
            return None
        if isinstance(parameters, dict):
            return str(parameters.get("key"))
        return None

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        who = role()
        if who is None:
            return
        pids[who] = conn.connection.dbapi_connection.get_backend_pid()  # the connection now in use
        key = xcom_key(statement, parameters)
        if who == "trigger" and key is not None:
            wait(
                f"trigger inserts {key} after the direct route did",
                lambda: key in inserted["direct"] or done["direct"].is_set(),
            )

    @event.listens_for(engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        who = role()
        if who is None:
            return
        key = xcom_key(statement, parameters)
        if key is not None:
            inserted[who].add(key)
        flat = " ".join(statement.split()).upper()
        if who == "direct" and flat.startswith("SELECT") and flat.endswith("FOR UPDATE"):
            locked.set()
        if who == "trigger" and flat.startswith("SELECT") and "FROM TASK_INSTANCE" in flat and "TRIGGER_ID" in flat:
            wait("trigger selected the gate, the direct route locks it", locked.is_set)

    @event.listens_for(engine, "commit")
    def commit(conn: Any) -> None:
        if role() == "direct":
            pid = pids.get("trigger")
            wait(
                "direct route commits while the trigger's route waits on a lock",
                lambda: done["trigger"].is_set() or (pid is not None and blocked_on_lock(pid)),
            )

    results: dict[str, Any] = {}

    def run(who: str, call: Any) -> None:
        roles[threading.get_ident()] = who
        try:
            results[who] = {"returned": call()}
        except BaseException as exc:
            results[who] = {"raised": f"{type(exc).__name__}: {exc}"[:500], "traceback": traceback.format_exc()[-2000:]}
        finally:
            done[who].set()

    end = GateEnd.of(store.get(request_id))  # type: ignore[arg-type]
    threads = [
        threading.Thread(target=run, args=("trigger", lambda: Trigger.submit_event(trigger_id, end.event()))),
        threading.Thread(target=run, args=("direct", lambda: DirectRoute.end(req))),
    ]
    threads[0].start()
    wait("the trigger's route started first", lambda: "trigger" in pids)
    threads[1].start()
    for t in threads:
        t.join(timeout=DEADLINE * 4)
    event.remove(engine, "before_cursor_execute", before)
    event.remove(engine, "after_cursor_execute", after)
    event.remove(engine, "commit", commit)

    with settings.Session() as s:  # type: ignore[misc]
        ti = s.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == req.dag_id,
                TaskInstance.run_id == req.run_id,
                TaskInstance.task_id == req.gate_task_id,
            )
        ).one()
        xcoms = {
            x.key: x.value
            for x in s.scalars(
                select(XComModel).where(
                    XComModel.dag_id == req.dag_id,
                    XComModel.run_id == req.run_id,
                    XComModel.task_id == req.gate_task_id,
                )
            )
        }
        state_after = str(ti.state)
    return {
        "trigger": results.get("trigger"),
        "direct": results.get("direct"),
        "waits": waits,
        "timeouts": timeouts,
        "state": state_after,
        "return_value": decode_gate_xcom(xcoms.get("return_value")),
        "decision": decode_gate_xcom(xcoms.get("hitl_decision")),
        "approved_output": req.final_output,
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1])), default=str))
