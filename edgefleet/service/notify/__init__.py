"""Alarm notifications: routes alarm events to webhooks and e-mail through an outbox in the store.

`load_notify_config` reads and checks the TOML config; `Notifier` routes the store's alarm journal
to channels, holds flapping reopens, escalates unacknowledged alarms and retries with backoff;
`verify` is what a webhook receiver does with the signature. docs/notifications.md.
"""

from edgefleet.service.notify.channels import DeliveryError, send
from edgefleet.service.notify.config import (
           Email,
           NotifyConfig,
           Route,
           Webhook,
           load_notify_config,
           parse_notify_config,
)
from edgefleet.service.notify.message import SIGNATURE_HEADER, build_body, sign, verify
from edgefleet.service.notify.notifier import Notifier

__all__ = ["SIGNATURE_HEADER", "DeliveryError", "Email", "Notifier", "NotifyConfig", "Route", "Webhook", "build_body",
           "load_notify_config", "parse_notify_config", "send", "sign", "verify"]
