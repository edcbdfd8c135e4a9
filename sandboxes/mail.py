"""A mail server on loopback that keeps what it receives: where the demo's and the tests' alerts go.

    with MailSink(directory) as mail:          # aiosmtpd on 127.0.0.1, a free port
        mail.airflow_connection()              # the `dijlepost_alerts` SMTP Connection as JSON
        mail.wait_for(1)                       # the messages received, each also saved as NNN.eml

Plain SMTP on loopback only (no TLS, no login): a stand-in for the city's mail relay, which the
production Connection reaches with STARTTLS and a verified certificate (README, *Alerts*).
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from email.message import EmailMessage
from pathlib import Path

from sandboxes.services import free_port


class MailSink:
    def __init__(self, directory: Path, sender: str = "dijlepost@mechelen.example"):
        self.directory = Path(directory)
        self.sender = sender
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._controller = None

    # aiosmtpd calls this for every message it accepts
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / f"{len(self.messages):03d}.eml").write_bytes(envelope.content)
        return "250 Message accepted for delivery"

    def start(self) -> MailSink:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def airflow_connection(self) -> dict:
        """The SMTP Connection (`AIRFLOW_CONN_DIJLEPOST_ALERTS`) that reaches this server."""
        return {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": self.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": self.sender, "timeout": 10},
        }

    def wait_for(self, count: int, timeout: float = 60) -> list[EmailMessage]:
        """The messages received, once there are at least `count` (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.2)
        raise TimeoutError(f"{len(self.messages)} message(s) after {timeout}s, expected {count}")


def as_text(message: EmailMessage) -> str:
    """A message's headers and body as a person reads them (HTML tables as `name: value` lines)."""
    import re
    from html import unescape

    body = message.get_body(preferencelist=("plain", "html"))
    content = body.get_content() if body is not None else ""
    if body is not None and body.get_content_type() == "text/html":
        content = re.sub(r"</t[hd]>\s*<td>", ": ", content)
        content = re.sub(r"</tr>", "\n", content)
        content = unescape(re.sub(r"<[^>]+>", "", content))
    lines = [f"From: {message['From']}", f"To: {message['To']}", f"Subject: {message['Subject']}", ""]
    return "\n".join(lines + [line.strip() for line in content.splitlines() if line.strip()])
