"""A local mail sink for the demo: an SMTP server on loopback that writes every message it receives as an
``.eml`` file, so the approver's notification (with its signed links) lands beside the email the workflow sends.

Standard library only (the demo's runtime lock carries no test tools): enough SMTP for Airflow's smtp
provider (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), no TLS and no login, loopback only. A message
without ``Date`` or ``Message-ID`` gets them, as a real server would add them.
"""

from __future__ import annotations

import email
import os
import re
import socketserver
import threading
import time
from email import policy
from email.utils import formatdate, make_msgid
from pathlib import Path

MAX_MESSAGE_BYTES = 10 * 1024 * 1024


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60].strip("_") or "message"


def store_message(outbox: Path, raw: bytes, recipients: list[str]) -> Path:
    """Write a received message into ``outbox`` as ``mail__<time>__<to>.eml``, adding Date and Message-ID if missing."""
    msg = email.message_from_bytes(raw, policy=policy.SMTP)
    added = b""  # prepended as they are: the message itself is kept byte for byte, as a mailbox would
    if msg["Date"] is None:
        added += f"Date: {formatdate(usegmt=True)}\r\n".encode()
    if msg["Message-ID"] is None:
        added += f"Message-ID: {make_msgid(domain='hitl.local')}\r\n".encode()
    outbox.mkdir(parents=True, exist_ok=True, mode=0o700)  # signed links inside: the owner's only, as the stack's home
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    base = f"mail__{stamp}__{_safe(recipients[0] if recipients else 'nobody')}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for n in range(1, 10_000):  # two messages at once never share a name: the file is created exclusively
        path = outbox / (f"{base}.eml" if n == 1 else f"{base}__{n}.eml")
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as out:
            out.write(added + raw)
        return path
    raise OSError(f"no free file name for {base} in {outbox}")


class _Handler(socketserver.StreamRequestHandler):
    server: MailSink
    timeout = 60  # an idle client does not hold a thread forever

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self.reply("220 hitl-mail-sink ESMTP")
        recipients: list[str] = []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            command = line.decode("utf-8", "replace").strip()
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-hitl-mail-sink")
                self.reply(f"250 SIZE {MAX_MESSAGE_BYTES}")
            elif verb == "HELO":
                self.reply("250 hitl-mail-sink")
            elif verb == "MAIL":
                recipients = []
                self.reply("250 OK")
            elif verb == "RCPT":
                match = re.search(r"<([^>]*)>", command)
                recipients.append(match.group(1) if match else command[8:].strip())
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                raw = self._read_data()
                if raw is None:
                    self.reply("552 Message too large")
                    return
                path = store_message(self.server.outbox, raw, recipients)
                self.server.received.append(path)
                self.reply("250 OK: queued as " + path.name)
                recipients = []
            elif verb in ("RSET", "NOOP"):
                recipients = [] if verb == "RSET" else recipients
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")

    def _read_data(self) -> bytes | None:
        lines: list[bytes] = []
        size = 0
        at_line_start = True  # a read may stop mid-line (65,536 bytes): only a line's start can end the data
        while True:
            line = self.rfile.readline(65536)
            if not line or (at_line_start and line in (b".\r\n", b".\n")):
                break
            if at_line_start and line.startswith(b".."):
                line = line[1:]  # dot-stuffing
            at_line_start = line.endswith(b"\n")
            size += len(line)
            if size > MAX_MESSAGE_BYTES:
                return None
            lines.append(line)
        return b"".join(lines)


class MailSink(socketserver.ThreadingTCPServer):
    """``MailSink(outbox)``: serving on 127.0.0.1 (``.port``) in a daemon thread until ``shutdown()``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, outbox: Path, port: int = 0) -> None:
        self.outbox = outbox
        self.received: list[Path] = []
        super().__init__(("127.0.0.1", port), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def connection_uri(self, from_email: str = "Airflow approvals <approvals@hitl.local>") -> str:
        """Airflow's smtp connection to this sink, as JSON for ``AIRFLOW_CONN_SMTP_DEFAULT``."""
        import json

        return json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": self.port,
                "extra": {"disable_tls": True, "disable_ssl": True, "from_email": from_email, "timeout": 10},
            }
        )

    def close(self) -> None:
        self.shutdown()
        self.server_close()
