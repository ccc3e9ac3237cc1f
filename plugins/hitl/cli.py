"""``python -m hitl``: validate specs, migrate the store, list, decide and comment on approvals.

Uses the same settings as Airflow (``AIRFLOW_HOME``, ``[hitl]`` config). Decisions go
through the decision service, so the CLI obeys the same approver rules as the UI.

Every failure is one line on stderr and a non-zero exit, never a traceback: 1 refused or
not found (also a migration that failed, the store left unchanged; a store not migrated for this
release; ``db check`` off head),
2 bad arguments or input, 3 the decision store is unavailable (or, to request changes,
Airflow's database: nothing was written, try again), 4 anything else
(``HITL_DEBUG=1`` shows its traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from hitl.notify.links import page_url
from hitl.settings import setting
from hitl.views.limits import (
    MAX_ID,
    BadInput,
    check_edit,
    check_text,
    loads_json,
    open_store,
    parse_id,
    shown,
    store_unavailable,
)

EXIT_REFUSED, EXIT_USAGE, EXIT_STORE_DOWN, EXIT_INTERNAL = 1, 2, 3, 4


def _validate(args: argparse.Namespace) -> int:
    from hitl.spec.connections import check_llm_steps
    from hitl.spec.loader import load_specs, spec_files

    paths = [Path(p) for p in args.paths] or [default_specs_folder()]
    missing = [p for p in paths if not p.exists()]
    for p in missing:
        print(f"{p}: no such file or folder", file=sys.stderr)
    files = spec_files([p for p in paths if p.exists()])
    dags = _dags_folder(args)
    if getattr(args, "dags_folder", None) and (dags is None or not dags.is_dir()):
        print(f"{args.dags_folder}: no such folder (--dags-folder)", file=sys.stderr)
        return EXIT_USAGE
    loaded = load_specs([p for p in paths if p.exists()], dags_folder=dags)
    bad = 0
    for item in loaded:
        # what only validate checks (the llm steps' model and environment connection): hitl.spec.connections
        errors, warnings = check_llm_steps(item) if item.ok else ([], [])
        for warning in warnings:
            print(warning)  # FILE:LINE: key.path: warning: ...
        if item.errors or errors:
            bad += 1
            for error in sorted([*item.errors, *errors], key=lambda e: e.line):
                print(error)
        elif not args.quiet:
            print(f"{item.path}: ok ({item.spec.id if item.spec else '?'}, {len(item.steps)} steps)")
    print(f"{len(files)} spec(s) checked, {bad} invalid", file=sys.stderr)
    return 1 if bad or missing or not files else 0


def _dags_folder(args: argparse.Namespace) -> Path | None:
    """Where ``validate`` looks for hand-written DAGs: ``--dags-folder``, else ``[core] dags_folder`` (Airflow's
    default, ``$AIRFLOW_HOME/dags``) when that folder exists here; else nothing is looked at."""
    from hitl.config import airflow_home, conf_get

    if getattr(args, "dags_folder", None):
        return Path(args.dags_folder)
    folder = Path(conf_get("core", "dags_folder", "") or airflow_home() / "dags").expanduser()
    return folder if folder.is_dir() else None


def default_specs_folder() -> Path:
    """What ``validate`` checks without a path: ``[hitl] specs_folder`` (as the DAG file), else ./workflow_specs."""

    configured = setting("specs_folder")
    return Path(configured) if configured else Path("workflow_specs")


def _store() -> Any:
    return open_store()


def _db_upgrade(args: argparse.Namespace) -> int:
    """Back a SQLite store up (when there is something to migrate), then migrate it, all or nothing."""
    from hitl.store.backup import backup_sqlite
    from hitl.store.migrate import UpgradeError, sqlite_file, state

    store = _store()
    where = store.engine.url.render_as_string(hide_password=True)
    before = state(store)
    backup = None
    if before.exists and before.current is not None and before.pending and sqlite_file(store.url) is not None:
        backup = backup_sqlite(store, revision=before.current)
        print(f"backed up the decision store (revision {before.current}) to {backup}")
    try:
        revision = store.upgrade()
    except UpgradeError as exc:
        unchanged = f"revision {exc.unchanged_at}" if exc.unchanged_at else "no schema"
        kept = f"; backup: {backup}" if backup else ""
        print(f"{exc}; the decision store is unchanged ({unchanged}{kept})", file=sys.stderr)
        return EXIT_REFUSED
    print(f"decision store at revision {revision} ({where})")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from hitl.store.migrate import state

    st = state(_store())
    if not st.exists:
        print(f"no decision store at {st.where}; head {st.head}")
        return 0
    at = st.current or "none (no schema)"
    behind = f", {len(st.pending)} behind" if st.pending and st.current else ""
    unknown = ", unknown to this release" if not st.known else ""
    print(f"revision {at}{behind}{unknown}; head {st.head} ({st.where})")
    return 0


def _db_check(args: argparse.Namespace) -> int:
    from hitl.store.migrate import state

    st = state(_store())
    problem = st.problem()
    if problem is not None:
        print(problem, file=sys.stderr)
        return EXIT_REFUSED
    print(f"decision store at head {st.head} ({st.where})")
    return 0


def _db_restore(args: argparse.Namespace) -> int:
    from hitl.store.backup import restore_sqlite

    store = _store()
    try:
        revision, saved = restore_sqlite(store, Path(args.backup))
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if saved is not None:
        print(f"saved the store as it was to {saved}")
    print(f"restored {args.backup} (revision {revision}) into {store.engine.url.render_as_string(hide_password=True)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from hitl.store import RequestQuery

    reqs = _store().list_requests(RequestQuery(status=args.status, dag_id=args.dag_id), limit=args.limit)
    if args.json:
        rows = [{**r.as_dict(), "url": page_url(r.id)} for r in reqs]
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not reqs:
        print(f"no {args.status} approval requests")
    for r in reqs:
        print(f"{r.id:>6}  {r.status:<10} {r.dag_id}.{r.step_id}  run={r.run_id}  {r.summary}")
    return 0


def _show(args: argparse.Namespace) -> int:
    store = _store()
    req = store.get(args.id)
    if req is None:
        print(f"no approval request {args.id}", file=sys.stderr)
        return 1
    data: dict[str, Any] = {**req.as_dict(), "url": page_url(req.id)}
    data["comments"] = [c.as_dict() for c in store.comments(req.id)]
    data["history"] = [
        {"event": e.event, "actor": e.actor, "at": e.at.isoformat(), "detail": e.detail} for e in store.history(req.id)
    ]
    print(json.dumps(data, indent=2, default=str))
    return 0


def _decide(args: argparse.Namespace, action: str) -> int:
    from hitl.airflow_users import UnknownUser, asserted_reviewer
    from hitl.decisions import DecisionError, RerunRefused, decide

    field = {"approve": "comment", "reject": "reason", "request_changes": "feedback"}[action]
    try:
        comment = check_text(getattr(args, field), field)
        reviewer = asserted_reviewer(args.user, _store().dag_ids())
    except BadInput as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except UnknownUser as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_REFUSED
    edited = None
    store = _store()
    if getattr(args, "output_json", None):
        try:
            edited = _edit_over_draft(store, args.id, loads_json(args.output_json, what="--output-json"))
        except BadInput as exc:
            print(f"invalid edit: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        outcome = decide(
            store,
            args.id,
            reviewer,
            action,  # type: ignore[arg-type]
            comment=comment,
            edited_output=edited,
            channel="cli",
        )
    except RerunRefused as exc:  # Airflow's database is unavailable from here: nothing was written; try again
        print(str(exc), file=sys.stderr)
        return EXIT_STORE_DOWN
    except DecisionError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_REFUSED
    print(outcome.message)
    return 0


def _edit_over_draft(store: Any, request_id: int, given: Any) -> dict[str, Any] | None:
    """``--output-json``: the fields given replace the draft's, the others are kept (an edit of one field is
    ``'{"subject": "..."}'``, not the whole output retyped). A field set to null is removed."""
    if not isinstance(given, dict):
        return check_edit(given, what="--output-json")  # refused there, with the reason
    req = store.get(request_id)
    draft = req.output if req is not None and isinstance(req.output, dict) else {}
    merged = {**draft, **given}
    for key in [k for k, v in given.items() if v is None]:
        merged.pop(key)
    return check_edit(merged, what="--output-json")


def _comment(args: argparse.Namespace) -> int:
    from hitl.airflow_users import UnknownUser, asserted_reviewer
    from hitl.comments import add_comment
    from hitl.decisions import DecisionError

    try:
        body = check_text(args.body, "comment")
        author = asserted_reviewer(args.user, _store().dag_ids())
    except BadInput as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except UnknownUser as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_REFUSED
    try:
        comment = add_comment(_store(), args.id, author, body, channel="cli")
    except DecisionError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_REFUSED
    print(f"comment {comment.id} added to request {args.id}{comment.told()}")
    return 0


def _audit_export(args: argparse.Namespace) -> int:
    from hitl.audit_export import AuditFilter, render, rows

    try:
        which = AuditFilter(request_id=args.request, workflow=args.workflow, since=args.since, until=args.until)
    except ValueError as exc:
        print(f"python -m hitl audit export: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    chunks = render(rows(_store(), which), args.format)
    if not args.output:
        sys.stdout.writelines(chunks)
        return 0
    with open(args.output, "w", encoding="utf-8", newline="") as out:
        out.writelines(chunks)
    return 0


def _policy_report(args: argparse.Namespace) -> int:
    import json

    from hitl.policy_report import report

    found = report(_store(), last=args.last, dag_id=args.workflow, step_id=args.step)
    if args.json:
        print(json.dumps({"last": args.last, "gates": [g.as_dict() for g in found]}, indent=2))
        return 0
    if not found:
        print("no human decisions yet on drafts of a gate with a policy")
        return 0
    for g in found:
        rate = "-" if g.agreement is None else f"{g.agreement:.0%}"
        print(
            f"{g.dag_id} / {g.step_id} (rule {g.rule_hash}, {g.mode}): {g.decisions} decided by people, policy verdict"
            f" on {g.would_decide}, agreed {g.agreed} ({rate}), would approve but rejected"
            f" {g.approve_reject}, would reject but approved {g.reject_approve},"
            f" reviews saved {g.saved}"
        )
        for d in g.disagreements:
            print(f"  request {d['request_id']}: policy {d['policy']}, {d['decided_by']} {d['human']}")
    return 0


def _users_sync(args: argparse.Namespace) -> int:
    from hitl.airflow_users import sync_directory

    count = sync_directory(_store())
    print(f"user directory: {count} user{'s' if count != 1 else ''} written to the decision store")
    return 0


def _roles_sync(args: argparse.Namespace) -> int:
    from hitl.fab_roles import NotFab, run

    try:
        changes = run(
            dag_ids=args.dag or [], all_dags=args.all_dags, reader=args.reader_role, decider=args.decider_role
        )
    except NotFab as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    for change in changes:
        print(change.line())
    return 0


def _monitor_install(args: argparse.Namespace) -> int:
    from hitl.monitor_install import InstallRefused, install

    try:
        path, how = install(Path(args.dags_folder) if args.dags_folder else None, force=args.force)
    except InstallRefused as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_REFUSED
    print(f"{path}: {how} (the hitl_monitor DAG: one run a day, a sweep every [hitl] monitor_interval_seconds)")
    return 0


def _when(name: str) -> Any:
    def parse(text: str) -> Any:
        from hitl.audit_export import parse_time

        try:
            return parse_time(text, name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _request_id(text: str) -> int:
    number = parse_id(text)
    if number is None:
        raise argparse.ArgumentTypeError(f"not a request id: {shown(text)!r} (a whole number from 1 to {MAX_ID})")
    return number


def _limit(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 10_000):
        raise argparse.ArgumentTypeError(f"not a limit: {shown(text)!r} (a whole number from 1 to 10000)")
    return int(text)


_EPILOG = """\
every command (each has --help):
  validate [PATH ...]                      check specs (default: [hitl] specs_folder)
  db upgrade                               migrate the decision store (all or nothing; SQLite: backed up first)
  db current                               the store's revision and this release's head
  db check                                 exit 0 at head, else 1 and why (behind, unknown, not a store)
  db restore BACKUP                        put a SQLite backup back (the way back from an upgrade)
  approvals list [--status S] [--json]     list requests
  approvals show ID                        one request as JSON
  approvals approve ID --user U [--comment C] [--output-json '{"field": "new value"}']
  approvals reject ID --user U --reason R
  approvals request-changes ID --user U --feedback F
  approvals comment ID --user U --body B
  roles sync [--dag DAG_ID ...] [--all-dags]   FabAuthManager reviewer roles
  users sync                               the user directory (emails, roles, DAGs) for task code
  monitor install [--dags-folder PATH]     the hitl_monitor DAG file, for DAGs without specs
  audit export [--request ID | --workflow DAG_ID] [--since T] [--until T] [--format jsonl|csv]
  policy report [--workflow DAG_ID] [--step S] [--last N] [--json]   shadow agreement of gate policies

exit codes: 0 done, 1 refused or not found, 2 bad input, 3 the decision store (or Airflow's database) is
unavailable, 4 anything else (HITL_DEBUG=1 shows the traceback), 141 the reader of the output went away
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m hitl",
        description="Validate specs, migrate the decision store, list, decide and comment on approvals.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check workflow specs; exit 1 when any is invalid")
    p.add_argument(
        "paths", nargs="*", help="spec files or folders (default: [hitl] specs_folder, else workflow_specs/)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument(
        "--dags-folder",
        help="refuse workflow ids that hand-written DAG files here define (default: [core] dags_folder if it exists)",
    )
    p.set_defaults(func=_validate)

    db = sub.add_parser("db", help="the decision store's schema").add_subparsers(dest="db_command", required=True)
    db.add_parser(
        "upgrade", help="apply the decision store's migrations, all or nothing (idempotent; SQLite: backs up first)"
    ).set_defaults(func=_db_upgrade)
    db.add_parser("current", help="the store's revision and this release's head").set_defaults(func=_db_current)
    db.add_parser(
        "check", help="exit 0 when the store is at head, else 1 with the reason (behind, unknown, not a store)"
    ).set_defaults(func=_db_check)
    p = db.add_parser("restore", help="put a SQLite backup made by db upgrade back (the current file is saved first)")
    p.add_argument("backup", help="the backup file (<store>.backup-<revision>-<time>)")
    p.set_defaults(func=_db_restore)

    ap = sub.add_parser("approvals", help="list and decide approval requests").add_subparsers(
        dest="approvals_command", required=True
    )
    p = ap.add_parser("list", help="requests by status (default: pending), newest first")
    p.add_argument(
        "--status",
        default="pending",
        choices=["pending", "approved", "rejected", "changes_requested", "superseded", "timed_out", "decided", "all"],
    )
    p.add_argument("--dag-id")
    p.add_argument("--limit", type=_limit, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)
    p = ap.add_parser("show", help="one request as JSON: output, approvers, comments, history")
    p.add_argument("id", type=_request_id)
    p.set_defaults(func=_show)
    p = ap.add_parser("approve", help="approve a request (--output-json: edit and approve)")
    p.add_argument("id", type=_request_id)
    p.add_argument("--user", required=True)
    p.add_argument("--comment")
    p.add_argument(
        "--output-json",
        help="Edit & Approve: a JSON object of the fields to change (the others stay as drafted; null removes one)",
    )
    p.set_defaults(func=lambda a: _decide(a, "approve"))
    p = ap.add_parser("reject", help="reject a request: the steps after the gate are skipped")
    p.add_argument("id", type=_request_id)
    p.add_argument("--user", required=True)
    p.add_argument("--reason", required=True)
    p.set_defaults(func=lambda a: _decide(a, "reject"))
    p = ap.add_parser("request-changes", help="send the draft back with feedback: the step runs again in its run")
    p.add_argument("id", type=_request_id)
    p.add_argument("--user", required=True)
    p.add_argument("--feedback", required=True, help="what the next draft should change")
    p.set_defaults(func=lambda a: _decide(a, "request_changes"))
    p = ap.add_parser("comment", help="comment on a request (@user notifies them); never decides")
    p.add_argument("id", type=_request_id)
    p.add_argument("--user", required=True)
    p.add_argument("--body", required=True)
    p.set_defaults(func=_comment)

    roles = sub.add_parser("roles", help="FabAuthManager: the reviewer roles").add_subparsers(
        dest="roles_command", required=True
    )
    p = roles.add_parser(
        "sync",
        help="create or update the roles ApprovalReader (read, comment) and ApprovalDecider (also decide) with"
        " exactly the permissions reviewing needs",
    )
    p.add_argument(
        "--dag",
        action="append",
        metavar="DAG_ID",
        help="also let both roles read this DAG's runs, task instances and outputs (repeatable)",
    )
    p.add_argument("--all-dags", action="store_true", help="the same for every DAG")
    p.add_argument("--reader-role", default="ApprovalReader", help="the reading role's name (default: %(default)s)")
    p.add_argument("--decider-role", default="ApprovalDecider", help="the deciding role's name (default: %(default)s)")
    p.set_defaults(func=_roles_sync)

    users = sub.add_parser("users", help="the user directory task code reads").add_subparsers(
        dest="users_command", required=True
    )
    p = users.add_parser(
        "sync",
        help="write every Airflow user's email, roles and readable DAGs to the store, for notifications sent from"
        " task code (the api-server also does it every [hitl] directory_refresh seconds)",
    )
    p.set_defaults(func=_users_sync)

    monitor = sub.add_parser("monitor", help="the hitl_monitor DAG (reminders, escalation, expiry)").add_subparsers(
        dest="monitor_command", required=True
    )
    p = monitor.add_parser(
        "install", help="write its DAG file into the DAGs folder (for DAGs without specs, a pip-only install)"
    )
    p.add_argument("--dags-folder", help="where to write hitl_monitor.py (default: [core] dags_folder)")
    p.add_argument("--force", action="store_true", help="replace a hitl_monitor.py this command did not write")
    p.set_defaults(func=_monitor_install)

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    p = audit.add_parser(
        "export", help="every audit event (what was shown, decided, by whom, with which edit) as JSON Lines or CSV"
    )
    p.add_argument("--request", type=_request_id, help="one request's trail")
    p.add_argument("--workflow", help="one workflow's (DAG id) trail")
    p.add_argument("--since", type=_when("--since"), help="events at or after this time (ISO 8601 with a zone)")
    p.add_argument("--until", type=_when("--until"), help="events before this time (ISO 8601 with a zone)")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    p.add_argument("--output", help="write to this file (default: standard output)")
    p.set_defaults(func=_audit_export)

    policy = sub.add_parser("policy", help="gate policies").add_subparsers(dest="policy_command", required=True)
    p = policy.add_parser("report", help="shadow agreement: how often each gate policy agreed with the people")
    p.add_argument("--workflow", help="one workflow (DAG id)")
    p.add_argument("--step", help="one gated step")
    p.add_argument("--last", type=_limit, default=200, help="the last N human decisions (default 200)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_policy_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    for name in ("hitl", "airflow", "alembic"):  # the CLI prints its own one-line results
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        args = build_parser().parse_args(argv)
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at the interpreter's exit
        return code
    except BrokenPipeError:
        return _pipe_closed()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("HITL_DEBUG"):
            raise
        behind = _schema_problem(exc)
        if behind is not None:  # reachable, but its schema is not this release's: not an outage
            print(behind, file=sys.stderr)
            return EXIT_REFUSED
        store_down = _store_down(exc)
        if store_down is not None:
            print(store_down, file=sys.stderr)
            return EXIT_STORE_DOWN
        print(f"error: {type(exc).__name__}: {_first_line(exc)} (HITL_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _pipe_closed() -> int:
    """The reader of our output went away (``| head``): stop quietly, as shell tools do (128 + SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # what is left in stdout's buffer goes nowhere at exit
    except (OSError, ValueError):
        pass
    return 141


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def _schema_problem(exc: BaseException) -> str | None:
    """The one line when ``exc`` is a query on a store not migrated for this release (``db upgrade``), else None."""
    if not store_unavailable(exc):
        return None
    try:
        from hitl.store import get_store
        from hitl.store.migrate import schema_problem

        return schema_problem(exc, get_store())
    except Exception:
        return None


def _store_down(exc: BaseException) -> str | None:
    """The one-line message when ``exc`` means the decision store cannot be opened or reached, else None."""
    if not store_unavailable(exc):
        return None
    cause = getattr(exc, "orig", None) or exc
    where = ""
    try:
        from sqlalchemy.engine import make_url

        from hitl.config import load_settings

        where = f" ({make_url(load_settings().store_url).render_as_string(hide_password=True)})"
    except Exception:  # the URL itself is what is wrong: say so without it
        pass
    return f"the decision store is unavailable{where}: {_first_line(cause)}"
