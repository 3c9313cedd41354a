"""`edgefleet bridge`: a serial node (QEMU or a board) as an MQTT device."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from edgefleet.commands.helptext import Formatter, examples
from edgefleet.device.bridge import Bridge


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bridge", help="bridge a serial node (COBS+CRC frames) to MQTT",
                       description="Connects a node's framed serial link (tcp://HOST:PORT for QEMU, or a "
                       "tty path) to the broker as that node's MQTT identity: birth and will, results, "
                       "status, debug, ota/req and ota/state out; cmd, ota/offer and ota/data in. Stops when the link ends.",
                       epilog=examples("edgefleet bridge --serial tcp://127.0.0.1:5555 --device qemu-0001",
                                       "edgefleet bridge --serial /dev/ttyACM0 --device pump-0007 "
                                       "--broker mqtts://broker.plant.example:8883 --ca var/pki/ca.crt"),
                       formatter_class=Formatter)
    p.add_argument("--serial", required=True, help="tcp://HOST:PORT or a serial device path")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883",
                   help="mqtt://[user:pass@]host:port, or mqtts:// for TLS (default mqtt://127.0.0.1:1883)")
    p.add_argument("--ca", metavar="PEM", help="mqtts://: CA of the broker's certificate (EDGEFLEET_MQTT_CA)")
    p.add_argument("--cert", metavar="PEM", help="mqtts:// mutual TLS: the node's certificate (EDGEFLEET_MQTT_CERT)")
    p.add_argument("--key", metavar="PEM", help="its private key (EDGEFLEET_MQTT_KEY)")
    p.add_argument("--device", required=True, help="the node's device id (its MQTT client id)")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the serial port and broker (default 10)")
    p.add_argument("--baud", type=int, default=115200, help="tty speed (default 115200; ignored for tcp://)")
    p.set_defaults(func=cmd_bridge)


def cmd_bridge(args: argparse.Namespace) -> int:
    from edgefleet.protocol.connect import TlsFiles

    b = Bridge(args.serial, args.broker, args.device, connect_timeout=args.connect_timeout, baud=args.baud,
               tls=TlsFiles.from_env(ca=args.ca, cert=args.cert, key=args.key))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        rc = b.run(stop)
    except KeyboardInterrupt:
        rc = 0
    s = b.stats
    print(json.dumps({"frames": s.frames_in, "bad_frames": s.bad_frames, "invalid": s.invalid,
                      "published": s.published, "cmds": s.cmds, "ota_in": s.ota_in}))
    return rc
