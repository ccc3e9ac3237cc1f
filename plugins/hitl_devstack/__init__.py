"""A local Airflow on SQLite with LocalExecutor and this plugin: the demo's, the end-to-end tests' and the benchmarks'.

Not part of the runtime package (the wheel carries ``hitl`` only).

Each stack has its own ``AIRFLOW_HOME`` and port, and stops the processes it started by PID.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
DEMO_USERS = {"admin": "admin", "alice": "user", "bob": "user"}
# Files that Airflow's components create in the stack's home (SQLite databases and their journals,
# logs, the outbox) are the owner's only.
CHILD_UMASK = 0o077
SQLITE_FILES = ("airflow.db", "hitl.db")


def write_private(path: Path, text: str) -> None:
    """Write ``path`` so that only its owner can ever read it.

    The content goes to a new file that is created 0600 (``mkstemp``; no umask can widen that), which
    then atomically replaces ``path``: there is no moment when the secret sits in a readable file, and
    a readable file left by an older version is replaced, not reused."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def from_install() -> bool:
    """True when the tests run against the installed package (a wheel in a fresh venv), not the checkout."""
    return os.environ.get("HITL_TEST_FROM_INSTALL") == "1"


def serve_demo_site(port: int = 0) -> http.server.ThreadingHTTPServer:
    """The example prospect's website on loopback (what webResearch reads): demo, tests, topology run."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(REPO / "demo" / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextlib.contextmanager
def fresh_postgres_database(server_url: str, prefix: str = "hitl_tmp") -> Iterator[str]:
    """A new, empty database on ``server_url``'s PostgreSQL server (its URL), dropped on the way out."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from hitl.store.engine import sync_url

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(sync_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def percentile(ordered: list[float], q: int) -> float:
    """The nearest-rank ``q``-th percentile of an ascending list (the benchmarks' one definition of p95)."""
    return ordered[max(0, -(-q * len(ordered) // 100) - 1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """True when nothing listens on ``port`` on any address (Airflow's log servers bind 0.0.0.0)."""
    if not 0 < port < 65536:
        return False
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


# Airflow's log servers (a worker's, the triggerer's) default to 8793 and 8794 whatever the api-server's port:
# a stack moves them with its port (8080 -> 8793/8794, 9090 -> 9803/9804), or takes free ports when those are taken.
LOG_PORT_OFFSETS = (713, 714)
# Airflow signs its tokens with HS512 when [api_auth] jwt_secret is set; PyJWT warns (InsecureKeyLengthWarning)
# about an HMAC key shorter than the hash, 64 bytes. token_urlsafe(64) is 86 characters.
JWT_SECRET_BYTES = 64


def log_server_ports(port: int) -> tuple[int, int]:
    worker, trigger = (port + offset for offset in LOG_PORT_OFFSETS)
    if port_free(worker) and port_free(trigger):
        return worker, trigger
    while True:  # two distinct ports, each free on every address (the log servers bind 0.0.0.0)
        worker, trigger = free_port(), free_port()
        if worker != trigger and port_free(worker) and port_free(trigger):
            return worker, trigger


class SetupFailed(RuntimeError):
    """The stack could not be set up (the decision store's migration failed: the message says which and why)."""


@dataclass
class AirflowStack:
    home: Path
    port: int = 8080
    dags_folder: Path = REPO / "dags"
    specs_folder: Path = REPO / "workflow_specs"
    users: dict[str, str] = field(default_factory=lambda: dict(DEMO_USERS))
    # ``[hitl] web_research_allow`` for the stack's components. The demo's and the tests' prospect sites
    # are on loopback (which webResearch refuses by default); scripts/demo.py narrows this to its site's port.
    web_research_allow: str = "127.0.0.1"
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    reaper: subprocess.Popen[bytes] | None = None
    # ``[logging] worker_log_server_port`` and ``trigger_log_server_port``; 0: moved with ``port`` (log_server_ports)
    worker_log_port: int = 0
    trigger_log_port: int = 0

    def __post_init__(self) -> None:
        if not (self.worker_log_port and self.trigger_log_port):
            self.worker_log_port, self.trigger_log_port = log_server_ports(self.port)

    @property
    def plugins_folder(self) -> Path:
        """The checkout's plugins folder, or an empty one when testing an installed wheel (HITL_TEST_FROM_INSTALL)."""
        if from_install():
            empty = self.home / "plugins"
            empty.mkdir(parents=True, exist_ok=True)
            return empty
        return REPO / "plugins"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bin(self) -> Path:
        return Path(sys.executable).parent

    def prepare_home(self) -> None:
        """The stack's home, private to its owner (0700), with any files an older version left readable tightened."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.home, 0o700)
        for name in ("stack-secrets.json", "passwords.json", *SQLITE_FILES):
            for path in (self.home / name, *(self.home / f"{name}{suffix}" for suffix in ("-journal", "-wal", "-shm"))):
                if path.exists() and path.stat().st_mode & 0o077:
                    os.chmod(path, 0o600)

    def _secrets(self) -> dict[str, str]:
        """The JWT secret, the API secret key and the Fernet key: generated once, kept in a 0600 file."""
        path = self.home / "stack-secrets.json"
        if path.exists():
            kept = dict(json.loads(path.read_text()))
            if len(kept.get("jwt", "")) >= JWT_SECRET_BYTES:
                return kept
            kept["jwt"] = secrets.token_urlsafe(JWT_SECRET_BYTES)  # an older, shorter one: PyJWT warned about it
            write_private(path, json.dumps(kept))
            return kept
        self.prepare_home()
        values = {"jwt": secrets.token_urlsafe(JWT_SECRET_BYTES), "api": secrets.token_urlsafe(32), "fernet": ""}
        try:
            from cryptography.fernet import Fernet

            values["fernet"] = Fernet.generate_key().decode()
        except ImportError:  # pragma: no cover
            pass
        write_private(path, json.dumps(values))
        return values

    def passwords(self) -> dict[str, str]:
        """Known passwords for the demo users (SimpleAuthManager reads this file; 0600)."""
        path = self.home / "passwords.json"
        current: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        missing = [user for user in self.users if user not in current]
        if missing or not path.exists():
            self.prepare_home()
            for user in missing:
                current[user] = secrets.token_urlsafe(9)
            write_private(path, json.dumps(current, indent=2))
        return current

    def env(self) -> dict[str, str]:
        sec = self._secrets()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__FERNET_KEY": sec["fernet"],
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in self.users.items()),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__SECRET_KEY": sec["api"],
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": sec["jwt"],
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__HITL__SPECS_FOLDER": str(self.specs_folder),
                "AIRFLOW__HITL__WEB_RESEARCH_ALLOW": self.web_research_allow,
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
                "PYTHONPATH": "" if from_install() else str(REPO / "plugins"),
            }
        )
        env.update(self.extra_env)
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]] if not args[0].startswith("/") else list(args),
            env=self.env(),
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            umask=CHILD_UMASK,
        )

    def setup(self) -> str:
        """Migrate Airflow's database and the decision store (created 0600); write the users' passwords.

        Returns what ``db upgrade`` printed (where it backed an older store up, and the revision); a failed
        migration raises ``SetupFailed`` with its one line, not a bare exit status.
        """
        self.prepare_home()
        self.passwords()
        self.run("airflow", "db", "migrate")
        self.write_cli_settings()
        upgrade = self.run("python", "-m", "hitl", "db", "upgrade", check=False)
        if upgrade.returncode != 0:
            raise SetupFailed(f"python -m hitl db upgrade: {upgrade.stderr.strip() or upgrade.stdout.strip()}")
        return upgrade.stdout.strip()

    def write_cli_settings(self) -> None:
        """Put the stack's real URL in its airflow.cfg (``[api] base_url``), so a CLI run from another shell with
        only ``AIRFLOW_HOME`` set prints review links on this stack's port, not Airflow's default 8080."""
        cfg = self.home / "airflow.cfg"
        text = cfg.read_text() if cfg.exists() else ""
        line = f"base_url = {self.base_url}"
        lines = text.splitlines()
        try:
            start = lines.index("[api]")
        except ValueError:
            lines += ["", "[api]", line]
        else:
            end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
            current = [i for i in range(start + 1, end) if re.match(r"base_url\s*=", lines[i])]
            if current:
                lines[current[0]] = line
            else:
                lines.insert(start + 1, line)
        cfg.write_text("\n".join(lines) + "\n")

    def start(self, components: tuple[str, ...] = COMPONENTS) -> None:
        """Start components, the api-server first (tasks and the scheduler talk to it), each in its own process group.

        A reaper process stops them all if this process dies without calling ``stop`` (a killed test run).
        """
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self._start_reaper()
        ordered = sorted(components, key=lambda name: name != "api-server")
        for name in ordered:
            args = [str(self.bin / "airflow"), name]
            if name == "api-server":
                args += ["--port", str(self.port), "--host", "127.0.0.1", "--workers", "1"]
            out = open(logs / f"{name}.out", "ab", opener=_private_opener)  # noqa: SIM115 - owned by the child
            self.procs[name] = subprocess.Popen(
                args,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=CHILD_UMASK,
            )
            self._record_groups()
            if name == "api-server" and len(ordered) > 1:
                self.wait_healthy()

    @property
    def groups_file(self) -> Path:
        return self.home / "stack-process-groups"

    def _start_reaper(self) -> None:
        if self.reaper is None or self.reaper.poll() is not None:
            from hitl_devstack import reaper

            self._record_groups()
            self.reaper = reaper.start(os.getpid(), self.groups_file)

    def _record_groups(self) -> None:
        self.groups_file.write_text("\n".join(str(p.pid) for p in self.procs.values()) + "\n")

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited with {proc.returncode}; see {self.home}/logs/{name}.out")
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"the api-server did not answer on {self.base_url} within {timeout:.0f}s")

    def token(self, user: str) -> str:
        body = json.dumps({"username": user, "password": self.passwords()[user]}).encode()
        req = urllib.request.Request(
            f"{self.base_url}/auth/token", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(json.loads(resp.read())["access_token"])

    def api(self, method: str, path: str, body: object | None = None, user: str = "admin") -> Any:
        """Call Airflow's REST API. A 500 is retried: Airflow on SQLite answers "database is locked"
        now and then while the scheduler and dag-processor write (a known SQLite limit, not ours)."""
        import urllib.error

        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(4):
            req = urllib.request.Request(
                f"{self.base_url}{path}",
                data=data,
                method=method,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token(user)}"},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as exc:
                if exc.code != 500 or attempt == 3:
                    raise
                time.sleep(1 + attempt)
        raise AssertionError("unreachable")

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", f"/api/v2/dags/{dag_id}")
                return
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout:.0f}s; see {self.home}/logs/dag-processor.out")

    def trigger(
        self, dag_id: str, conf: dict[str, object] | None = None, user: str = "admin", run_id: str | None = None
    ) -> str:
        """Trigger a run with a run id of our own, so a retried POST cannot create a second run."""
        import urllib.error
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        run_id = run_id or f"manual__{now.isoformat()}"
        body = {"dag_run_id": run_id, "logical_date": now.isoformat(), "conf": conf or {}}
        try:
            self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body, user=user)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: an earlier attempt did create it
                raise
        return run_id

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        ti = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        return ti.get("state")

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        run = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return run.get("state")

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return str(state)
            time.sleep(1)
        raise TimeoutError(f"run {run_id} still {state} after {timeout:.0f}s")

    def stop(self, grace: float = 30) -> None:
        """SIGTERM every component's process group (children included), SIGKILL what is left after ``grace``."""
        from hitl_devstack.reaper import group_alive

        pgids = [p.pid for p in self.procs.values()]
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            for proc in self.procs.values():
                proc.poll()  # reap the leader, so a zombie does not count as alive
            if not any(group_alive(g) for g in pgids):
                break
            time.sleep(0.2)
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(timeout=30)
        self.procs.clear()
        self.groups_file.unlink(missing_ok=True)  # the reaper sees its file gone and exits quietly
        if self.reaper is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.reaper.wait(timeout=10)
            self.reaper = None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=60)
        self._record_groups()
