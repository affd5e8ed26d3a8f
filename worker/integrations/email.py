"""Email for staff notifications: SMTP through the standard library (``smtplib``) when ``SMTP_HOST`` is set,
otherwise the console adapter, which logs that an email went out (recipients counted, never the body)."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from domain.ports import EmailSender, OutboundEmail
from medspa.settings import Settings

log = logging.getLogger(__name__)


class SmtpEmailSender:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 15.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password, self.starttls, self.timeout = username, password, starttls, timeout

    def send(self, email: OutboundEmail) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(email.to)
        message["Subject"] = email.subject
        message.set_content(email.body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)


class ConsoleEmailSender:
    """No SMTP server configured: say an email would have gone out (no addresses, no body: logs carry no PHI)."""

    def send(self, email: OutboundEmail) -> None:
        log.info("email (console adapter: SMTP_HOST unset)", extra={"recipients": len(email.to)})


def email_sender(settings: Settings) -> EmailSender:
    if not settings.smtp_host:
        return ConsoleEmailSender()
    return SmtpEmailSender(
        settings.smtp_host,
        settings.smtp_port,
        sender=settings.notify_email_from,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
    )
