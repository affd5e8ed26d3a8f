"""A local SMTP server for tests (the outside boundary of email): speaks enough of RFC 5321 for ``smtplib`` —
EHLO/HELO, MAIL FROM, RCPT TO, DATA, RSET, NOOP, QUIT — and keeps what it received."""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: Message

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        return payload.decode() if isinstance(payload, bytes) else str(payload)


@dataclass
class FakeSmtpServer:
    received: list[ReceivedMail] = field(default_factory=list)
    fail_next: int = 0  # answer the next N DATA commands with a temporary failure
    _server: socketserver.ThreadingTCPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> FakeSmtpServer:
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                self.reply("220 fake-smtp ready")
                sender, recipients = "", []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    command = raw.decode(errors="replace").strip()
                    verb = command[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 fake-smtp")
                    elif verb == "MAIL":
                        sender, recipients = command.split(":", 1)[1].strip().strip("<>"), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with .")
                        lines = []
                        while True:
                            line = self.rfile.readline()
                            if line in (b".\r\n", b".\n", b""):
                                break
                            lines.append(line[1:] if line.startswith(b"..") else line)
                        if fake.fail_next > 0:
                            fake.fail_next -= 1
                            self.reply("451 try again later")
                            continue
                        fake.received.append(
                            ReceivedMail(sender, list(recipients), message_from_bytes(b"".join(lines)))
                        )
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:  # RSET, NOOP
                        self.reply("250 OK")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-smtp", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
