"""`make demo`: a local Airflow with the approval plugin, running the outreach example up to its gate.

SQLite, LocalExecutor, no accounts needed. Keeps running until Ctrl-C, then stops
everything it started.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from hitl_devstack import AirflowStack, SetupFailed, serve_demo_site  # noqa: E402
from hitl_devstack.mailsink import MailSink  # noqa: E402

DAG_ID = "local_business_outreach"
DEMO_EMAILS = "admin:admin@acme-pos.example,alice:alice@acme-pos.example,bob:bob@acme-pos.example"


def _port(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    if not (text.isdigit() and 0 < int(text) < 65536):
        raise SystemExit(f"{name}={text!r} is not a port (1-65535)")
    return int(text)


def shell_airflow_settings(environ: Mapping[str, str], stack: AirflowStack) -> tuple[dict[str, str], list[str]]:
    """The shell's ``AIRFLOW__*`` variables: those the demo does not set are passed on (kept), the others are
    named (overridden), never dropped silently."""
    ours = {k for k in stack.env() if k.startswith("AIRFLOW__")} | set(stack.extra_env)
    shell = {k: v for k, v in environ.items() if k.startswith("AIRFLOW__")}
    kept = {k: v for k, v in shell.items() if k not in ours}
    return kept, sorted(k for k in shell if k in ours and shell[k] != stack.env().get(k))


def main() -> int:
    home = Path(os.environ.get("AIRFLOW_HOME", REPO / ".airflow"))
    site_port = int(os.environ.get("HITL_DEMO_SITE_PORT", "8765"))
    site_url = f"http://127.0.0.1:{site_port}/"
    outbox = home / "outbox"
    # The approvers' notifications go by SMTP to a local sink that writes them into the outbox, beside the
    # email the workflow sends (its outbox transport): the whole loop, signed links included, on this machine.
    mail = MailSink(outbox, port=_port("HITL_MAIL_PORT", 0))
    # webResearch refuses loopback addresses unless allowed: allow the demo's own site, and only it.
    # AIRFLOW_VAR_HITL_DEMO_SITE_URL: the example's default prospect URL follows the site's port, so a run started
    # from Airflow's Trigger button (with the default params) reads this site too.
    stack = AirflowStack(
        home=home,
        port=_port("HITL_PORT", 8080),
        web_research_allow=f"127.0.0.1:{site_port}",
        worker_log_port=_port("HITL_WORKER_LOG_PORT", 0),  # 0: HITL_PORT + 713
        trigger_log_port=_port("HITL_TRIGGER_LOG_PORT", 0),  # 0: HITL_PORT + 714
        extra_env={
            "AIRFLOW_CONN_SMTP_DEFAULT": mail.connection_uri(),
            "AIRFLOW__HITL__USER_EMAILS": DEMO_EMAILS,  # SimpleAuthManager users have no email of their own
            "AIRFLOW_VAR_HITL_DEMO_SITE_URL": site_url,
        },
    )
    kept, overridden = shell_airflow_settings(os.environ, stack)
    stack.extra_env.update(kept)
    for name in overridden:
        print(f"note: {name} from your shell is overridden by the demo (it sets its own)", file=sys.stderr)
    if kept:
        print(f"passing your shell's {', '.join(sorted(kept))} to Airflow", file=sys.stderr)
    print(f"AIRFLOW_HOME={home}")
    print("setting up Airflow's database and the decision store ...", flush=True)
    try:
        print(stack.setup())  # the store's revision, and where an older store was backed up first
    except SetupFailed as exc:
        print(exc, file=sys.stderr)
        return 1
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
                f"{stack.trigger_log_port} (HITL_WORKER_LOG_PORT, HITL_TRIGGER_LOG_PORT; else HITL_PORT + 713/714);"
                f" mail sink {mail.port} (HITL_MAIL_PORT)"
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
