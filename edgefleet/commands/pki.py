"""`edgefleet pki ...`: the fleet's TLS certificates (a CA, the broker's certificate, one per device)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edgefleet.commands.helptext import Formatter, examples
from edgefleet.service.audit import recorded

DEFAULT_DIR = "var/pki"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pki", help="TLS certificates: a fleet CA, the broker's, one per device (mutual TLS)",
                       description="A small PKI for mqtts:// (docs/security.md). Private keys are written "
                       "0600 and never printed; the broker needs ca.crt, server.crt, server.key and crl.pem.",
                       epilog="example: edgefleet pki init --dir var/pki --san broker.plant.example --san 10.0.0.5 && "
                              "edgefleet pki issue sim-0001 && edgefleet broker --tls var/pki --require-cert")
    ps = p.add_subparsers(dest="pki_command", metavar="ACTION", required=True)
    i = ps.add_parser("init", help="create the CA and the broker's server certificate",
                      description="Creates the fleet's CA (ca.crt, ca.key; valid 10 years), the broker's "
                      "certificate (server.crt, server.key; 825 days) for the names and addresses clients "
                      "reach it by, and an empty CRL (crl.pem). An existing CA is kept unless --force. Next: "
                      "`edgefleet pki issue NAME` for each device, then `edgefleet broker --tls DIR --require-cert`.",
                      epilog=examples("edgefleet pki init",
                                      "edgefleet pki init --dir var/pki --san broker.plant.example --san 10.0.0.5"),
                      formatter_class=Formatter)
    i.add_argument("--san", action="append", default=None, metavar="HOST",
                   help="a name or IP address clients use to reach the broker (repeatable; default "
                        "localhost and 127.0.0.1)")
    i.add_argument("--force", action="store_true", help="replace an existing CA (every old certificate stops working)")
    _dir(i)
    i.set_defaults(func=recorded("pki.init", lambda a: str(a.dir), cmd_init))
    s = ps.add_parser("issue", help="issue a client certificate (CN = NAME, a device or service id), or with "
                                    "--server a new broker certificate",
                      description="Signs a client certificate with the CA: NAME.crt and NAME.key (mode 0600) in "
                      "--dir, CN = NAME, which the broker takes as the MQTT username under mutual TLS. Copy the "
                      "pair and ca.crt to the device. With --server it writes a new broker certificate "
                      "(server.crt, server.key) for the --san names instead; restart the broker to use it. "
                      "Under the nats-cluster profile run `edgefleet pki nats-users` again afterwards.",
                      epilog=examples("edgefleet pki issue sim-0001",
                                      "edgefleet pki issue pump-0007 --dir var/pki --days 365",
                                      "edgefleet pki issue --server --san broker.plant.example --san 10.0.0.5"),
                      formatter_class=Formatter)
    s.add_argument("name", nargs="?", help="device or service id (the MQTT username under mutual TLS)")
    s.add_argument("--server", action="store_true",
                   help="instead: a new broker certificate, written as server.crt/server.key (no NAME)")
    s.add_argument("--san", action="append", default=None, metavar="HOST",
                   help="with --server: a name or IP address clients use to reach the broker (repeatable; "
                        "at least one, no default)")
    s.add_argument("--days", type=int, default=None,
                   help="validity in days, at least 1 and not past the CA's expiry (default 825, or until the CA "
                        "expires when that is sooner; `edgefleet pki list` shows the CA's date)")
    _dir(s)
    s.set_defaults(func=recorded("pki.issue", lambda a: "server" if a.server else str(a.name), cmd_issue))
    r = ps.add_parser("revoke", help="put a client certificate on the CRL (crl.pem); SIGHUP the broker to apply",
                      description="Adds the certificate's serial to revoked.json and rewrites crl.pem, signed by "
                      "the CA. The broker refuses the certificate once it has loaded the new CRL: send it SIGHUP "
                      "or restart it (under the nats-cluster profile, run `edgefleet pki nats-users` again and "
                      "reload the members). The certificate files stay; issue the name again for a new one.",
                      epilog=examples("edgefleet pki revoke sim-0001",
                                      "edgefleet pki revoke pump-0007 --dir var/pki"),
                      formatter_class=Formatter)
    r.add_argument("name", help="the client certificate's name, as given to `edgefleet pki issue` "
                                "(`edgefleet pki list` shows them)")
    _dir(r)
    r.set_defaults(func=recorded("pki.revoke", lambda a: a.name, cmd_revoke))
    n = ps.add_parser("nats-users", help="write the NATS cluster's accounts: one user per client certificate, "
                                         "each device confined to its own topics (verify_and_map)",
                      description="For the nats-cluster profile (deploy/nats/nats.conf includes the file): NATS maps a "
                      "client certificate's subject to a user, so each device may publish only its own uplink and "
                      "read only its own downlink, and a revoked certificate (not in the file) is refused once the "
                      "members reload. Write it again after every `pki issue` or `pki revoke`.",
                      epilog="example: edgefleet pki nats-users --dir var/pki --out var/nats/users.conf && "
                             "nats-server --signal reload")
    n.add_argument("--out", type=Path, required=True, help="the file to write (atomically, mode 0644)")
    _dir(n)
    n.set_defaults(func=recorded("pki.nats_users", lambda a: str(a.out), cmd_nats_users))
    ls = ps.add_parser("list", help="certificates, their expiry and whether they are revoked",
                       description="Prints one line per certificate in --dir (the CA, the broker's, every "
                       "client's): name, kind, expiry date, serial, and REVOKED for those on the CRL. Issue "
                       "a certificate again before it expires; none is valid past the CA's expiry.",
                       epilog=examples("edgefleet pki list", "edgefleet pki list --dir var/pki"),
                       formatter_class=Formatter)
    _dir(ls)
    ls.set_defaults(func=cmd_list)


def _dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, default=Path(os.environ.get("EDGEFLEET_PKI_DIR") or DEFAULT_DIR),
                   help=f"where the files live (default $EDGEFLEET_PKI_DIR or {DEFAULT_DIR})")


def cmd_init(args: argparse.Namespace) -> int:
    from edgefleet.service import pki

    written = pki.init(args.dir, server_names=args.san or ["localhost", "127.0.0.1"], force=args.force)
    print(f"wrote {', '.join(str(p) for p in written)} (keys mode 0600); server names: "
          f"{', '.join(args.san or ['localhost', '127.0.0.1'])}")
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    import sys

    from edgefleet.errors import ConfigError
    from edgefleet.service import pki

    days = args.days  # below 1, or past the CA's expiry: pki.issue refuses it in one line
    if days is None:  # the default validity, shortened to the CA's remaining life (said, not silent)
        days, left = pki.LEAF_DAYS, pki.ca_days_left(args.dir)
        if 1 <= left < days:
            print(f"note: the CA expires in {left} days: the certificate is valid {left} days, not {days}",
                  file=sys.stderr)
            days = left
    if args.server:
        if args.name:
            raise ConfigError("--server takes no NAME: the broker's certificate is always server.crt")
        written = pki.issue(args.dir, "server", server=True, sans=args.san or [], days=days)
    else:
        if not args.name:
            raise ConfigError("say whose certificate: edgefleet pki issue NAME (a device or service id)")
        if args.san:
            raise ConfigError("--san is for --server certificates")
        written = pki.issue(args.dir, args.name, days=days)
    print(f"wrote {written[0]} and {written[1]} (mode 0600)")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from edgefleet.service import pki

    crl = pki.revoke(args.dir, args.name)
    print(f"revoked {args.name}: {crl} updated; send the broker SIGHUP (or restart it) to load it")
    return 0


def cmd_nats_users(args: argparse.Namespace) -> int:
    import sys

    from edgefleet.service import nats_auth

    n, warnings = nats_auth.write_users(args.dir, args.out)
    for w in warnings:
        print(f"note: {w}", file=sys.stderr)
    print(f"wrote {args.out}: {n} NATS users from {args.dir}; reload every member (nats-server --signal reload, "
          "or SIGHUP) to apply")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from edgefleet.service import pki

    for c in pki.listing(args.dir):
        print(f"{c.name:24s} {c.kind:7s} expires {c.not_after:%Y-%m-%d}  serial {c.serial:x}"
              + ("  REVOKED" if c.revoked else ""))
    return 0
