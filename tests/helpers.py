"""Builders shared by the tests."""

from __future__ import annotations

from typing import Any


def gate(**overrides: Any) -> Any:
    """A GateRequest for an email draft, as the sensor would make it."""
    from hitl.store import GateRequest

    values: dict[str, Any] = {
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


class LoopbackServer:
    """One fake HTTP server for every test that needs a peer (Slack, Google, a web site): real HTTP on 127.0.0.1.

    ``answer(method, path, headers, body)`` returns ``(status, headers, body)``; every request is recorded in
    ``calls`` as ``(method, path, headers, body)``. Use as a context manager, or call ``close()``.
    """

    def __init__(self, answer: Any) -> None:
        import http.server
        import threading

        self.calls: list[tuple[str, str, dict[str, str], bytes]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers)
                server.calls.append((self.command, self.path, headers, body))
                status, extra, data = answer(self.command, self.path, headers, body)
                self.send_response(status)
                extra = {"Content-Length": str(len(data)), **extra}
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:  # the client stopped reading (a size cap under test)
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def json_reply(body: Any, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    """A JSON answer for ``LoopbackServer``."""
    import json

    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def render_partial(app: Any, template: str, store: Any, request_id: int, reviewer: Any, **ctx: Any) -> str:
    """One of the review page's partials, rendered with what the review page gives it (``hx``, ``when``)."""
    from datetime import UTC

    from flask import render_template

    from hitl.access import access
    from hitl.views.changes import review_extras
    from hitl.views.render import when

    req = store.get(request_id)
    assert req is not None
    with app.test_request_context(f"/hitl/request/{request_id}"):
        return render_template(
            template,
            req=req,
            reviewer=reviewer,
            action="",
            hx=review_extras(store, req, access(req, reviewer)),
            when=lambda value, seconds=False: when(value, ("UTC", UTC), seconds),
            **ctx,
        )


class FakeSlack:
    """A local HTTP server speaking the parts of Slack's webhook and Web API that we use."""

    def __init__(self) -> None:
        from helpers import LoopbackServer

        self.emails: dict[str, str] = {}
        self.server = LoopbackServer(self._answer)
        self.url = self.server.url

    @property
    def calls(self) -> list[tuple[str, Any]]:
        import json
        from urllib.parse import parse_qs

        out = []
        for _method, path, headers, raw in self.server.calls:
            text = raw.decode()
            if "json" in (headers.get("Content-Type") or ""):
                body: Any = json.loads(text or "{}")
            else:
                body = {k: v[0] for k, v in parse_qs(text).items()}
            out.append((path, body))
        return out

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        from urllib.parse import parse_qs

        from helpers import json_reply

        if path == "/api/chat.postMessage":
            return json_reply({"ok": True, "channel": "C123", "ts": "1700000000.000100"})
        if path == "/api/views.open":
            return json_reply({"ok": True, "view": {"id": "V1"}})
        if path == "/api/users.info":
            user = {k: v[0] for k, v in parse_qs(raw.decode()).items()}.get("user")
            return json_reply({"ok": True, "user": {"id": user, "profile": {"email": self.emails.get(user or "", "")}}})
        return 200, {"Content-Type": "text/plain"}, b"ok"

    def posted(self, path: str) -> list[Any]:
        return [body for p, body in self.calls if p == path]


def run_hitl(*args: str, env: dict[str, str] | None = None) -> Any:
    """``python -m hitl ARGS`` in this process (``hitl.cli.main``): its exit code, stdout and stderr.

    As a ``subprocess.CompletedProcess``, so a test reads it as it would a real run; ``env`` is set for the call
    only, and the log levels the CLI sets for itself are put back. A few tests still run the real interpreter
    (a traceback, an import-time failure): this is for the many that check what the CLI says and exits with.
    """
    import contextlib
    import io
    import logging
    import os
    import subprocess

    from hitl.cli import main

    names = ("hitl", "airflow", "alembic")
    levels = {name: logging.getLogger(name).level for name in names}
    saved = {key: os.environ.get(key) for key in (env or {})}
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update(env or {})
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    return subprocess.CompletedProcess(["python", "-m", "hitl", *args], code, out.getvalue(), err.getvalue())


def wait_for(what: str, check: Any, timeout: float = 180, every: float = 0.5) -> Any:
    """``check()``'s first truthy value, asked every ``every`` seconds until ``timeout``: the one wait of the tests.

    A condition with a deadline, never a fixed sleep: ``TimeoutError`` names what did not happen and the last answer.
    """
    import time

    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f}s (last: {last!r})")
        time.sleep(every)
