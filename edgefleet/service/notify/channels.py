"""Delivery over one channel: an HTTP POST (webhook) or SMTP (e-mail), standard library only.

Each `send` returns on success and raises DeliveryError with one line (no secret, no URL path)
otherwise; the notifier retries with backoff.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from edgefleet.service.notify.config import Email, Webhook
from edgefleet.service.notify.message import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    chat_payload,
    email_text,
    encode_body,
    sign,
    subject_of,
)

USER_AGENT = "edgefleet-notify/1"


class DeliveryError(Exception):
    """A channel did not take a notification (one line, safe to log)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a signed POST is not replayed elsewhere
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def send_webhook(ch: Webhook, body: dict) -> int:
    """POST the JSON body (edgefleet's, or a Slack/Teams payload), signed when the channel has a
    secret; returns the HTTP status (2xx) or raises DeliveryError."""
    data = encode_body(body if ch.format == "json" else chat_payload(body, ch.format))
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               DELIVERY_HEADER: body["id"], EVENT_HEADER: body["event"], **dict(ch.headers)}
    if ch.secret:
        headers[SIGNATURE_HEADER] = sign(ch.secret, data)
    req = urllib.request.Request(ch.url, data=data, headers=headers, method="POST")
    try:
        with _opener.open(req, timeout=ch.timeout_s) as resp:
            resp.read(65536)
            return resp.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{ch.where} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"{ch.where} unreachable: {exc.reason}") from None
    except (socket.timeout, TimeoutError):
        raise DeliveryError(f"{ch.where} did not answer within {ch.timeout_s:g} s") from None
    except (OSError, ValueError) as exc:
        raise DeliveryError(f"{ch.where}: {type(exc).__name__}: {exc}") from None


def email_message(ch: Email, body: dict) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject_of(body)
    msg["From"] = ch.sender
    msg["To"] = ", ".join(ch.to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=ch.sender.rsplit("@", 1)[-1])
    msg[DELIVERY_HEADER] = body["id"]
    msg.set_content(email_text(body))
    return msg


def send_email(ch: Email, body: dict) -> None:
    msg = email_message(ch, body)
    ctx = ssl.create_default_context(cafile=ch.cafile or None)
    try:
        if ch.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(ch.host, ch.port, timeout=ch.timeout_s, context=ctx)
        else:
            smtp = smtplib.SMTP(ch.host, ch.port, timeout=ch.timeout_s)
        with smtp:
            if ch.security == "starttls":
                smtp.starttls(context=ctx)
            if ch.username:
                smtp.login(ch.username, ch.password)
            refused = smtp.send_message(msg)
        if refused:
            raise DeliveryError(f"{ch.where} refused {', '.join(sorted(refused))}")
    except smtplib.SMTPNotSupportedError:
        raise DeliveryError(f"{ch.where} does not offer STARTTLS (set security = \"none\" only on a trusted "
                            "network)") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"{ch.where} refused the login of {ch.username!r}: {exc.smtp_code}") from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"{ch.where} answered {exc.smtp_code} "
                            f"{exc.smtp_error.decode(errors='replace')[:200]}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"{ch.where} refused every recipient ({', '.join(sorted(exc.recipients))})") from None
    except (socket.timeout, TimeoutError):
        raise DeliveryError(f"{ch.where} did not answer within {ch.timeout_s:g} s") from None
    except ssl.SSLError as exc:
        raise DeliveryError(f"{ch.where}: TLS failed: {exc.reason or exc}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{ch.where}: {type(exc).__name__}: {exc}") from None


def send(ch: Webhook | Email, body: dict) -> None:
    if isinstance(ch, Webhook):
        send_webhook(ch, body)
    else:
        send_email(ch, body)


__all__ = ["DeliveryError", "email_message", "send", "send_email", "send_webhook"]
