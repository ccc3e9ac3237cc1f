"""`make demo`: a local Airflow with the approval plugin, running the outreach example up to its gate.

SQLite, LocalExecutor, no accounts needed. Keeps running until Ctrl-C, then stops
everything it started.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from hitl_devstack import AirflowStack, serve_demo_site  # noqa: E402
from hitl_devstack.mailsink import MailSink  # noqa: E402

DAG_ID = "local_business_outreach"
DEMO_EMAILS = "admin:admin@acme-pos.example,alice:alice@acme-pos.example,bob:bob@acme-pos.example"


def main() -> int:
    home = Path(os.environ.get("AIRFLOW_HOME", REPO / ".airflow"))
    site_port = int(os.environ.get("HITL_DEMO_SITE_PORT", "8765"))
    site_url = f"http://127.0.0.1:{site_port}/"
    outbox = home / "outbox"
    # The approvers' notifications go by SMTP to a local sink that writes them into the outbox, beside the
    # email the workflow sends (its outbox transport): the whole loop, signed links included, on this machine.
    mail = MailSink(outbox)
    # webResearch refuses loopback addresses unless allowed: allow the demo's own site, and only it.
    # AIRFLOW_VAR_HITL_DEMO_SITE_URL: the example's default prospect URL follows the site's port, so a run started
    # from Airflow's Trigger button (with the default params) reads this site too.
    stack = AirflowStack(
        home=home,
        port=int(os.environ.get("HITL_PORT", "8080")),
        web_research_allow=f"127.0.0.1:{site_port}",
        extra_env={
            "AIRFLOW_CONN_SMTP_DEFAULT": mail.connection_uri(),
            "AIRFLOW__HITL__USER_EMAILS": DEMO_EMAILS,  # SimpleAuthManager users have no email of their own
            "AIRFLOW_VAR_HITL_DEMO_SITE_URL": site_url,
        },
    )
    print(f"AIRFLOW_HOME={home}")
    print("setting up Airflow's database and the decision store ...", flush=True)
    stack.setup()
    site = serve_demo_site(site_port)
    print("starting api-server, scheduler, dag-processor, triggerer ...", flush=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
        stack.wait_healthy()
        stack.wait_for_dag(DAG_ID)
        run_id = stack.trigger(DAG_ID)  # the default params, as Airflow's Trigger button would
        print(f"triggered {DAG_ID} run {run_id}; waiting for it to reach the approval gate ...", flush=True)
        from hitl.store import get_store

        store = get_store(f"sqlite:///{home / 'hitl.db'}")
        request = None
        while request is None and not stopping:
            request = store.current_for_gate(DAG_ID, run_id, "draft_email__approval")
            time.sleep(1)
        if request is not None:
            pw = stack.passwords()
            print("\n" + "=" * 72)
            print(f"Airflow UI:        {stack.base_url}/   (Approvals: {stack.base_url}/pluginsv2/hitl/)")
            print(f"Pending approval:  {stack.base_url}/pluginsv2/hitl/request/{request.id}")
            print(f"  {request.summary}")
            print("Users (SimpleAuthManager):")
            print(f"  admin / {pw['admin']}   (admin)")
            print(f"  alice / {pw['alice']}   (the example's approver)")
            print(f"  bob   / {pw['bob']}   (not an approver: read-only)")
            print("Or decide from the CLI:")
            print(f"  AIRFLOW_HOME={home} .venv/bin/python -m hitl approvals list")
            print(f"  AIRFLOW_HOME={home} .venv/bin/python -m hitl approvals approve {request.id} --user alice")
            print(f"Mail (local sink on 127.0.0.1:{mail.port}) lands as .eml files in {outbox}/:")
            print("  mail__*.eml: alice's notification with its signed Review / Send email / Reject links")
            print(f"  {DAG_ID}__*__send_email.eml: the email itself, once alice approves")
            print(
                f"Demo site: {site_url} (HITL_DEMO_SITE_PORT); Airflow's log servers: {stack.worker_log_port}, "
                f"{stack.trigger_log_port} (they move with HITL_PORT)"
            )
            print("Ctrl-C stops everything.")
            print("=" * 72, flush=True)
        while not stopping:
            time.sleep(0.5)
    finally:
        print("stopping ...", flush=True)
        stack.stop()
        site.shutdown()
        mail.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
