"""docker-compose.yaml's Airflow services, run here as local processes (no Docker engine needed).

``ComposeStack`` reads the compose file, interpolates it with generated ``.env`` values, and starts each
Airflow service's own command with that service's own environment, ``deploy.replicas`` copies of it.
What a container would have differently is rewritten, and only that (``ComposeStack.local_overrides``):

- host names: ``postgres`` -> 127.0.0.1:5432 (the local server's ``postgres`` user; each database of the
  file gets a fresh one per stack, dropped by ``stop``), ``redis`` -> 127.0.0.1:6379 (a database number
  of this stack's own), ``airflow-api-server`` -> 127.0.0.1 on a free port;
- container paths (``/opt/airflow/...``) -> the checkout's ``dags``, the given specs folder, the stack's home;
- ports that replicas of one service would share on one host (the log servers) -> free ports;
- the Celery queue: one of this stack's own, so that another stack's workers on the same Redis never take
  its tasks;
- the auth manager: SimpleAuthManager with the demo users (the file's FabAuthManager needs roles granted
  by an operator; the plugin's FAB permission checks are covered by tests/views).

Processes, the reaper and stopping by process group are ``AirflowStack``'s.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hitl_devstack import CHILD_UMASK, REPO, SIMPLE_AUTH_MANAGER, AirflowStack, _private_opener, free_port

COMPOSE_FILE = REPO / "docker-compose.yaml"
INIT_SERVICE = "airflow-init"
API_SERVICE = "airflow-api-server"
CONTAINER_HOME = "/opt/airflow"
# The .env keys docker-compose.yaml requires (.env.example documents them).
ENV_KEYS = ("FERNET_KEY", "SECRET_KEY", "JWT_SECRET", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "AIRFLOW_ADMIN_PASSWORD")

_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


class ComposeError(ValueError):
    """The compose file cannot be interpolated (a required variable is missing) or has an unexpected shape."""


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's variable substitution: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group("plain"):
            return values.get(match.group("plain"), "")
        expr = match.group("braced") or ""
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])(.*))?", expr, re.DOTALL)
        if not m:
            raise ComposeError(f"invalid interpolation ${{{expr}}}")
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        value = values.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if unset else str(value)
        if op in (":?", "?"):
            if unset:
                raise ComposeError(f"{name}: {arg or 'required'}")
            return str(value)
        return value or ""

    return _VAR.sub(sub, text)


def _interpolate_tree(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, values)
    if isinstance(node, list):
        return [_interpolate_tree(x, values) for x in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, values) for k, v in node.items()}
    return node


def load(path: Path, values: dict[str, str]) -> dict[str, Any]:
    """The compose file with YAML anchors and merge keys resolved and variables substituted."""
    import yaml

    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ComposeError(f"{path}: no services")
    return dict(_interpolate_tree(data, values))


def generate_env() -> dict[str, str]:
    """Fresh values for every key .env.example lists as required."""
    from cryptography.fernet import Fernet

    values = {key: secrets.token_urlsafe(24) for key in ENV_KEYS}
    values["FERNET_KEY"] = Fernet.generate_key().decode()
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    from hitl_devstack import write_private

    write_private(path, "".join(f"{k}={v}\n" for k, v in values.items()))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    """The service's command as the apache/airflow image's entrypoint runs it: Airflow subcommands get ``airflow``."""
    cmd = service.get("command")
    args = shlex.split(cmd) if isinstance(cmd, str) else [str(x) for x in cmd or []]
    if not args:
        raise ComposeError("an Airflow service without a command")
    if args[0] in ("bash", "sh", "python", "airflow"):
        return args
    return ["airflow", *args]


def instance_hostname() -> str:
    """``[core] hostname_callable`` for replicas on one host: each its own name, as each container has."""
    import socket

    return os.environ.get("HITL_DEVSTACK_INSTANCE") or socket.getfqdn()


def replicas(service: dict[str, Any]) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


@dataclass
class ComposeStack(AirflowStack):
    """docker-compose.yaml's Airflow services as local processes, on the local PostgreSQL and Redis."""

    compose_file: Path = COMPOSE_FILE
    postgres_admin_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    postgres_host: str = "127.0.0.1:5432"
    postgres_user: str = "postgres"
    redis_host: str = "127.0.0.1:6379"
    # Per compose service: environment added after the file's and the local overrides (e.g. to switch off
    # ``[hitl] end_gate_from_decider`` in the api-server only).
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # Per compose service: a replica count instead of the file's ``deploy.replicas``.
    scale: dict[str, int] = field(default_factory=dict)
    worker_concurrency: int = 4
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    env_values: dict[str, str] = field(default_factory=generate_env)
    databases: dict[str, str] = field(default_factory=dict)  # compose database name -> local one
    created_databases: list[str] = field(default_factory=list)
    redis_db: int = field(default_factory=lambda: 1 + secrets.randbelow(15))
    log_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prepare_home()
        write_env_file(self.home / ".env", self.env_values)  # what `docker compose` would read
        self.spec = load(self.compose_file, self.env_values)
        self.services: dict[str, dict[str, Any]] = self.spec["services"]
        self.queue = f"hitl-topology-{self.tag}"

    # -- the file -------------------------------------------------------------------------------------

    @property
    def airflow_services(self) -> list[str]:
        """Services that run Airflow (the ones built from this repo's image), the init service excluded."""
        return [n for n, s in self.services.items() if ("build" in s or "image" not in s) and n != INIT_SERVICE]

    def replica_names(self, service: str) -> list[str]:
        n = self.scale.get(service, replicas(self.services[service]))
        return [service] if n == 1 else [f"{service}-{i}" for i in range(1, n + 1)]

    def _database(self, name: str) -> str:
        if name not in self.databases:
            self.databases[name] = f"hitl_topo_{self.tag}_{re.sub(r'[^a-z0-9_]', '_', name.lower())}"
        return self.databases[name]

    def rewrite(self, value: str) -> str:
        """A container's URL or path as this machine sees it."""
        if value.startswith(CONTAINER_HOME):
            rest = value[len(CONTAINER_HOME) :].lstrip("/")
            top, _, sub = rest.partition("/")
            base = {"dags": self.dags_folder, "workflow_specs": self.specs_folder}.get(top)
            return str(base / sub if base and sub else base) if base else str(self.home / rest)
        if "://" not in value:
            return value
        parts = urllib.parse.urlsplit(value)
        host = parts.hostname or ""
        scheme = parts.scheme
        if host == "postgres":
            db = self._database(parts.path.lstrip("/") or "postgres")
            return urllib.parse.urlunsplit((scheme, f"{self.postgres_user}@{self.postgres_host}", f"/{db}", "", ""))
        if host == "redis":
            return urllib.parse.urlunsplit((scheme, self.redis_host, f"/{self.redis_db}", "", ""))
        if host == API_SERVICE:
            return urllib.parse.urlunsplit((scheme, f"127.0.0.1:{self.port}", parts.path, parts.query, ""))
        return value

    def _log_port(self, key: str) -> int:
        if key not in self.log_ports:
            self.log_ports[key] = free_port()
        return self.log_ports[key]

    def local_overrides(self, instance: str) -> dict[str, str]:
        """What a container would have differently from a local process (see the module's docstring)."""
        return {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "PYTHONPATH": str(REPO / "plugins"),
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in self.users.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._log_port(f"worker:{instance}")),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._log_port(f"trigger:{instance}")),
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__HITL__WEB_RESEARCH_ALLOW": self.web_research_allow,
        }

    def service_environment(self, service: str, instance: str | None = None) -> dict[str, str]:
        self.passwords()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update({k: self.rewrite(v) for k, v in environment(self.services[service]).items()})
        env.update(self.local_overrides(instance or service))
        if command(self.services[service])[1:2] == ["triggerer"]:
            # Replicas of the triggerer tell their jobs apart by hostname (distinct containers' names).
            env["HITL_DEVSTACK_INSTANCE"] = instance or service
            env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "hitl_devstack.compose.instance_hostname"
        env.update(self.extra_env)
        env.update(self.service_env.get(service, {}))
        return env

    def env(self) -> dict[str, str]:
        """The api-server's environment: the one ``run`` (CLI calls) uses."""
        return self.service_environment(API_SERVICE)

    # -- databases ------------------------------------------------------------------------------------

    def _admin(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.postgres_admin_url)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create_databases(self) -> None:
        for name in self.databases.values():
            self._admin(f'CREATE DATABASE "{name}"')
            self.created_databases.append(name)

    def drop_databases(self) -> None:
        while self.created_databases:
            name = self.created_databases.pop()
            with contextlib.suppress(Exception):
                self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url_of(self, compose_database: str) -> str:
        return f"postgresql://{self.postgres_user}@{self.postgres_host}/{self._database(compose_database)}"

    # -- processes ------------------------------------------------------------------------------------

    def setup(self) -> str:
        """Fresh databases, then the init service's own command; its failure is an error with its output."""
        self.prepare_home()
        for service in (INIT_SERVICE, *self.airflow_services):
            self.service_environment(service)  # registers every database the file names
        self.create_databases()
        env = self.service_environment(INIT_SERVICE)
        # The file's FAB admin user: SimpleAuthManager (the local override) has no `airflow users`.
        env["AIRFLOW_ADMIN_PASSWORD"] = ""
        result = subprocess.run(
            command(self.services[INIT_SERVICE]),
            env={**env, "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}"},
            capture_output=True,
            text=True,
            timeout=600,
            umask=CHILD_UMASK,
        )
        (self.home / "airflow-init.out").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"{INIT_SERVICE} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result.stdout.strip()

    def _argv(self, service: str, instance: str) -> list[str]:
        args = command(self.services[service])
        if args[0] in ("airflow", "python"):
            args[0] = str(self.bin / args[0])
        if args[1:2] == ["api-server"]:
            args += ["--port", str(self.port), "--host", "127.0.0.1", "--workers", "1"]
        if args[1:3] == ["celery", "worker"]:
            args += ["--celery-hostname", f"{instance}-{self.tag}@%h", "--queues", self.queue]
        return args

    def start(self, components: tuple[str, ...] | None = None) -> None:  # type: ignore[override]
        """Start the file's Airflow services (or given instances, e.g. ``airflow-triggerer-1``), api-server first."""
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self._start_reaper()
        instances = [(s, i) for s in self.airflow_services for i in self.replica_names(s)]
        if components is not None:
            instances = [(s, i) for s, i in instances if i in components or s in components]
        instances.sort(key=lambda si: si[0] != API_SERVICE)
        for service, instance in instances:
            env = self.service_environment(service, instance)
            out = open(logs / f"{instance}.out", "ab", opener=_private_opener)  # noqa: SIM115 - owned by the child
            self.procs[instance] = subprocess.Popen(
                self._argv(service, instance),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=CHILD_UMASK,
            )
            self._record_groups()
            if service == API_SERVICE and len(instances) > 1:
                self.wait_healthy()

    def stop(self, grace: float = 30) -> None:
        try:
            super().stop(grace)
        finally:
            self.drop_databases()
