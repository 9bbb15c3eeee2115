"""Atlas mails (confirmation link, temporary password) through the configured SMTP
server (``[atlas.smtp]``, aiosmtplib). Any failure to hand a mail over becomes
EmailDeliveryFailed (500, the seed's "Email external module error"); the SMTP password
and the mail bodies (which carry links and passwords) are never logged.
"""
from __future__ import annotations

import logging
import uuid
from email.message import EmailMessage
from urllib.parse import urlencode

import aiosmtplib

from common.errors import EmailDeliveryFailed
from manager.config import AtlasConfig

log = logging.getLogger(__name__)


class Mailer:
    def __init__(self, config: AtlasConfig) -> None:
        self._config = config

    async def send(self, to: str, subject: str, body: str) -> None:
        smtp = self._config.smtp
        msg = EmailMessage()
        msg["From"] = smtp.from_address
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        try:
            await aiosmtplib.send(
                msg, hostname=smtp.host, port=smtp.port, use_tls=smtp.tls,
                start_tls=smtp.starttls if not smtp.tls else False,
                username=smtp.username,
                password=smtp.password.get_secret_value() if smtp.password else None,
                timeout=smtp.timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            # the reason only: never the message, never the credentials
            log.warning("cannot send mail through %s:%d: %s: %s", smtp.host, smtp.port,
                        type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
            raise EmailDeliveryFailed("Email external module error: the mail could not be "
                                      "sent; try again later") from None

    def confirmation_link(self, account: uuid.UUID, email: str, token: str) -> str:
        query = urlencode({"email": email, "userId": str(account), "token": token})
        return f"{self._config.public_url}/atlas/auth/confirm-email?{query}"

    async def send_confirmation(self, account: uuid.UUID, email: str, nickname: str,
                                token: str) -> None:
        link = self.confirmation_link(account, email, token)
        await self.send(email, "Confirm your email address",
                        f"Hello {nickname},\n\nconfirm your email address by opening this "
                        f"link:\n\n{link}\n\nIf you did not sign up, ignore this mail.\n")

    async def send_temporary_password(self, email: str, nickname: str, password: str,
                                      minutes: int) -> None:
        await self.send(email, "Your temporary password",
                        f"Hello {nickname},\n\nyour temporary password is:\n\n{password}\n\n"
                        f"It works for {minutes} minutes; your old password keeps working "
                        "until you sign in with it. Change it after signing in.\n"
                        "If you did not ask for it, ignore this mail.\n")
