"""``python -m hitl``: validate specs, migrate the store, list and decide approvals.

Uses the same settings as Airflow (``AIRFLOW_HOME``, ``[hitl]`` config). Decisions go
through the decision service, so the CLI obeys the same approver rules as the UI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _validate(args: argparse.Namespace) -> int:
    from hitl.spec.loader import load_specs, spec_files

    paths = [Path(p) for p in args.paths] or [Path("workflow_specs")]
    missing = [p for p in paths if not p.exists()]
    for p in missing:
        print(f"{p}: no such file or folder", file=sys.stderr)
    files = spec_files([p for p in paths if p.exists()])
    loaded = load_specs([p for p in paths if p.exists()])
    bad = 0
    for item in loaded:
        if item.errors:
            bad += 1
            for error in item.errors:
                print(error)
        elif not args.quiet:
            print(f"{item.path}: ok ({item.spec.id if item.spec else '?'}, {len(item.steps)} steps)")
    print(f"{len(files)} spec(s) checked, {bad} invalid", file=sys.stderr)
    return 1 if bad or missing or not files else 0


def _store() -> Any:
    from hitl.store import get_store

    return get_store()


def _db_upgrade(args: argparse.Namespace) -> int:
    store = _store()
    head = store.upgrade()
    print(f"decision store at revision {head} ({store.engine.url.render_as_string(hide_password=True)})")
    return 0


def _review_url(request_id: int) -> str:
    from hitl.config import load_settings

    return f"{load_settings().base_url}/pluginsv2/hitl/request/{request_id}"


def _list(args: argparse.Namespace) -> int:
    from hitl.store import RequestQuery

    reqs = _store().list_requests(RequestQuery(status=args.status, dag_id=args.dag_id), limit=args.limit)
    if args.json:
        rows = [{**r.as_dict(), "url": _review_url(r.id)} for r in reqs]
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
    data: dict[str, Any] = {**req.as_dict(), "url": _review_url(req.id)}
    data["history"] = [
        {"event": e.event, "actor": e.actor, "at": e.at.isoformat(), "detail": e.detail} for e in store.history(req.id)
    ]
    print(json.dumps(data, indent=2, default=str))
    return 0


def _decide(args: argparse.Namespace, action: str) -> int:
    from hitl.decisions import DecisionError, decide
    from hitl.identity import lookup_reviewer

    edited = None
    if getattr(args, "output_json", None):
        try:
            edited = json.loads(args.output_json)
        except json.JSONDecodeError as exc:
            print(f"invalid edit: --output-json is not JSON: {exc}", file=sys.stderr)
            return 2
    try:
        outcome = decide(
            _store(),
            args.id,
            lookup_reviewer(args.user),
            action,  # type: ignore[arg-type]
            comment=args.comment if action == "approve" else args.reason,
            edited_output=edited,
            channel="cli",
        )
    except DecisionError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(outcome.message)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hitl", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check workflow specs; exit 1 when any is invalid")
    p.add_argument("paths", nargs="*", help="spec files or folders (default: workflow_specs/)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.set_defaults(func=_validate)

    db = sub.add_parser("db", help="the decision store's schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=_db_upgrade)

    ap = sub.add_parser("approvals", help="list and decide approval requests").add_subparsers(
        dest="approvals_command", required=True
    )
    p = ap.add_parser("list")
    p.add_argument(
        "--status", default="pending", choices=["pending", "approved", "rejected", "superseded", "decided", "all"]
    )
    p.add_argument("--dag-id")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)
    p = ap.add_parser("show")
    p.add_argument("id", type=int)
    p.set_defaults(func=_show)
    p = ap.add_parser("approve")
    p.add_argument("id", type=int)
    p.add_argument("--user", required=True)
    p.add_argument("--comment")
    p.add_argument("--output-json", help="Edit & Approve: the full edited output as JSON")
    p.set_defaults(func=lambda a: _decide(a, "approve"))
    p = ap.add_parser("reject")
    p.add_argument("id", type=int)
    p.add_argument("--user", required=True)
    p.add_argument("--reason", required=True)
    p.set_defaults(func=lambda a: _decide(a, "reject"))
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    for name in ("hitl", "airflow"):  # the CLI prints its own one-line results
        logging.getLogger(name).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return int(args.func(args))
