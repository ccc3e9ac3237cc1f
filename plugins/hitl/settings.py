"""Every ``[hitl]`` setting, declared once with its default and description, the way Airflow's providers declare theirs.

**Where a setting is declared**: here, and only here. ``setting(key)`` reads one (its ``AIRFLOW__HITL__<KEY>`` env
var, else airflow.cfg, else the default below, through ``hitl.airflow_config.conf_get``, which needs no Airflow import);
an undeclared key is a ``KeyError``, so a typo cannot silently read a default. ``provider_info()`` hands the same
declarations to Airflow (the ``apache_airflow_provider`` entry point), so ``airflow config list`` and Airflow's
configuration reference show them with their defaults.

A default that depends on the installation (the store and outbox under ``$AIRFLOW_HOME``, the specs folder beside
the DAGs folder, the link secret) is empty here and computed where it is read; its description says what it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SECTION = "hitl"
VERSION_ADDED = "0.1.0"


@dataclass(frozen=True)
class Setting:
    key: str
    description: str
    default: str = ""
    type: Literal["string", "boolean", "integer", "float"] = "string"
    example: str | None = None
    sensitive: bool = False

    def option(self) -> dict[str, Any]:
        """The option as Airflow's provider schema describes one (``provider_info.schema.json``)."""
        return {
            "description": self.description,
            "version_added": VERSION_ADDED,
            "type": self.type,
            "example": self.example,
            "default": self.default or None,
            **({"sensitive": True} if self.sensitive else {}),
        }


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "store_url",
        "The decision store's SQLAlchemy URL. Empty: sqlite:///$AIRFLOW_HOME/hitl.db. PostgreSQL in production.",
        example="postgresql://hitl@db/hitl",
        sensitive=True,
    ),
    Setting(
        "poll_interval",
        "Seconds between the triggerer's looks at the store when nothing signals a change (a store other than "
        "SQLite or PostgreSQL, or a lost LISTEN connection).",
        "0.5",
        "float",
    ),
    Setting(
        "safety_poll_interval",
        "Seconds between the triggerer's safety looks while a change signal is in use (PostgreSQL's LISTEN/NOTIFY "
        "or the SQLite file's stamp).",
        "30",
        "float",
    ),
    Setting("outbox_dir", "Where the outbox email transport writes .eml files. Empty: $AIRFLOW_HOME/outbox."),
    Setting("specs_folder", "Where the DAG file finds workflow specs. Empty: workflow_specs beside the DAGs folder."),
    Setting(
        "secret_key",
        "Signs one-click review links. Empty: [api] secret_key, else a generated $AIRFLOW_HOME/hitl-link-secret.",
        sensitive=True,
    ),
    Setting(
        "smtp_conn_id", "The smtp provider connection for email notifications (skipped if absent).", "smtp_default"
    ),
    Setting("email_from", "The sender of notification emails. Empty: the connection's from_email."),
    Setting(
        "user_emails",
        "user:address pairs, comma-separated: emails of users listed by userId, overriding the user directory.",
        example="alice:alice@example.com,bob:bob@example.com",
    ),
    Setting(
        "fallback_email",
        "Where notifications go when no approver email resolves and the workflow's owner is not an address.",
    ),
    Setting("slack_conn_id", "A global Slack connection for notifications (per workflow: notify.slack)."),
    Setting("slack_channel", "The Slack channel of the global connection (a bot-token connection needs one)."),
    Setting(
        "slack_signing_secret",
        "Slack's signing secret: enables interactive Slack buttons and the action endpoint.",
        sensitive=True,
    ),
    Setting(
        "monitor_interval_seconds",
        "How often hitl_monitor's daily run sweeps for reminders, escalations, expiries and timeouts.",
        "300",
        "float",
    ),
    Setting(
        "store_outage_wait",
        "Seconds a step that needs the decision store (the guard before an approved action, a re-run draft's review "
        "rounds, the email step's at-most-once record) waits for it to come back, with backoff, before it fails "
        "without acting; 0 not at all.",
        "300",
        "float",
    ),
    Setting(
        "end_gate_from_decider",
        "The deciding process (api-server, CLI) ends the parked gate at once; false leaves it to the trigger.",
        "true",
        "boolean",
    ),
    Setting(
        "directory_refresh",
        "Under FabAuthManager, seconds between the api-server's syncs of the user directory (users' emails, roles "
        "and readable DAGs) into the store, for notifications sent from task code; 0 never (then run "
        "python -m hitl users sync).",
        "300",
        "float",
    ),
    Setting(
        "web_research_allow",
        "Hosts, IPs or CIDRs (optionally :port) that webResearch may fetch although they are not public. Loopback, "
        "private, link-local and cloud-metadata addresses are refused otherwise, on every redirect too.",
        example="intranet.example.com, 10.1.2.0/24, 127.0.0.1:8765",
    ),
    Setting(
        "web_research_max_bytes", "At most this many bytes of a page are read by webResearch.", "2000000", "integer"
    ),
)
BY_KEY = {s.key: s for s in SETTINGS}


def setting(key: str) -> str:
    """``[hitl] key`` as configured, else its declared default (``KeyError`` for a key declared nowhere)."""
    from hitl.airflow_config import conf_get

    return conf_get(SECTION, key, BY_KEY[key].default)


def flag(key: str) -> bool:
    """A boolean setting (``true``/``1``/``yes``/``on``), as Airflow reads its booleans."""
    return setting(key).strip().lower() in ("1", "true", "yes", "on")


def number(key: str) -> float:
    """A numeric setting; a value that is not a number falls back to the declared default, never a crash."""
    try:
        return float(setting(key))
    except ValueError:
        return float(BY_KEY[key].default)


def provider_info() -> dict[str, Any]:
    """What Airflow's ``ProvidersManager`` reads from the ``apache_airflow_provider`` entry point: the settings."""
    return {
        "package-name": "airflow-hitl",
        "name": "Approval gates (hitl)",
        "description": "Human-in-the-loop approval gates: workflow specs, the ApprovalSensor and the review UI.",
        "config": {
            SECTION: {
                "description": "Approval gates: the decision store, notifications, the monitor and channels.",
                "options": {s.key: s.option() for s in SETTINGS},
            }
        },
    }
