"""`edgefleet machine`: what the fleet database knows about each machine beyond its node: a friendly name
and key=value tags (shown and searched on the dashboard), its ISO 20816 machine class (per machine or per
site; default II) and its bearing geometry (the dashboard's BPFO, BPFI and BSF marks). The dashboard's
Device page (*Machine settings*) writes the class and geometry settings."""

from __future__ import annotations

import argparse
import json

from edgefleet.commands.fleet_db import db_arg, db_label, require_db
from edgefleet.commands.helptext import Formatter, examples
from edgefleet.errors import EdgefleetError


def register(sub: argparse._SubParsersAction) -> None:
    from edgefleet.service.config import default_db

    db_help = ("fleet database shared with `edgefleet serve`: a SQLite file or a postgresql:// URL "
               f"(default $EDGEFLEET_DB or {db_label(default_db())})")
    p = sub.add_parser("machine", help="a machine's name, tags, ISO 20816 class and bearing geometry",
                       description=__doc__.split("\n\n")[0].replace("\n", " "))
    msub = p.add_subparsers(dest="machine_command", metavar="ACTION", required=True)

    c = msub.add_parser(
        "class", help="set the ISO 20816 machine class of a device or a site",
        description="Velocity RMS (mm/s) is judged against the zone boundaries of the machine's class: I small "
                    "machines (up to 15 kW), II medium (15-75 kW; the default), III large on rigid foundations, "
                    "IV large on soft foundations. A device's own class wins over its site's.",
        epilog=examples("edgefleet machine class III --site plant-east",
                        "edgefleet machine class III --site plant-west --new-site   # before its nodes report",
                        "edgefleet machine class I --device pump-0007",
                        "edgefleet machine class --unset --device pump-0007"),
        formatter_class=Formatter)
    c.add_argument("cls", nargs="?", metavar="CLASS", help="I, II, III or IV")
    where = c.add_mutually_exclusive_group(required=True)
    where.add_argument("--device", help="device id")
    where.add_argument("--site", help="site name (as the nodes report it); a site no device has reported from "
                                      "is refused (a typo would leave the real site on the default class) "
                                      "unless --new-site")
    c.add_argument("--new-site", action="store_true",
                   help="with --site: the site's nodes have not reported yet; set its class ahead of them")
    c.add_argument("--unset", action="store_true", help="remove the setting (the site's class, else II)")
    c.add_argument("--db", type=db_arg, default=db_arg(default_db()), help=db_help)
    c.set_defaults(func=cmd_class)

    b = msub.add_parser(
        "bearing", help="set a device's bearing geometry (defect frequencies on the dashboard's spectrum)",
        description="Stores the geometry of the bearing a device measures (from the bearing's data sheet): the "
                    "number of rolling elements, their diameter, the pitch diameter and the contact angle. The "
                    "command prints the defect frequencies as orders of the shaft speed (BPFO outer race, BPFI "
                    "inner race, BSF ball spin), and the dashboard marks them on the device's spectrum. Give "
                    "--balls, --ball-d and --pitch-d together; the device must have reported. The dashboard's "
                    "Device page (Machine settings) writes the same setting.",
        epilog=examples("edgefleet machine bearing pump-0007 --balls 9 --ball-d 7.94 --pitch-d 39.04   # a 6205",
                        "edgefleet machine bearing pump-0007 --unset"),
        formatter_class=Formatter)
    b.add_argument("device", help="device id")
    b.add_argument("--balls", type=int, help="rolling elements (3-60)")
    b.add_argument("--ball-d", type=float, metavar="MM", help="ball (roller) diameter, mm")
    b.add_argument("--pitch-d", type=float, metavar="MM", help="pitch diameter, mm")
    b.add_argument("--contact", type=float, default=0.0, metavar="DEG", help="contact angle, degrees (default 0)")
    b.add_argument("--unset", action="store_true", help="remove the geometry")
    b.add_argument("--db", type=db_arg, default=db_arg(default_db()), help=db_help)
    b.set_defaults(func=cmd_bearing)

    n = msub.add_parser(
        "name", help="give a device a friendly name (shown and searched on the dashboard)",
        description="Gives the machine a device measures a name people know it by; the dashboard shows it "
                    "beside the device id and finds the device by it. The device must have reported; its id "
                    "stays what the node reports. A name given again replaces the old one, --unset removes it.",
        epilog=examples('edgefleet machine name pump-0007 "Pump 3, cooling loop"',
                        "edgefleet machine name pump-0007 --unset"),
        formatter_class=Formatter)
    n.add_argument("device", help="device id")
    n.add_argument("name", nargs="?", help="the name (up to 80 characters; quote it when it has spaces)")
    n.add_argument("--unset", action="store_true", help="remove the name")
    n.add_argument("--db", type=db_arg, default=db_arg(default_db()), help=db_help)
    n.set_defaults(func=cmd_name)

    t = msub.add_parser(
        "tag", help="set or remove key=value tags of a device (kept apart from the tags its node reports)",
        description="Sets key=value tags on a device in the fleet database (a key set again is replaced; "
                    "other keys stay) or removes them with --remove. They are kept apart from the tags the "
                    "node itself reports, so a node's next report does not undo them; the dashboard shows "
                    "and searches them, and `edgefleet machine show` lists them.",
        epilog=examples("edgefleet machine tag pump-0007 type=pump room=B2",
                        "edgefleet machine tag pump-0007 --remove room"),
        formatter_class=Formatter)
    t.add_argument("device", help="device id")
    t.add_argument("tags", nargs="*", metavar="KEY=VALUE", help="tags to set (a key set again is replaced)")
    t.add_argument("--remove", action="append", default=[], metavar="KEY", help="remove this tag (repeatable)")
    t.add_argument("--db", type=db_arg, default=db_arg(default_db()), help=db_help)
    t.set_defaults(func=cmd_tag)

    s = msub.add_parser(
        "show", help="every device's ISO class (and where it comes from) and bearing geometry",
        description="Lists the sites' ISO 20816 classes, then one line per device: its site, its class and "
                    "where the class comes from (the device's own, its site's, or the default II), its bearing "
                    "geometry, name and tags. Change them with `edgefleet machine class`, `bearing`, `name` "
                    "and `tag`.",
        epilog=examples("edgefleet machine show", "edgefleet machine show --json --db var/edgefleet.db"),
        formatter_class=Formatter)
    s.add_argument("--json", action="store_true",
                   help="print one JSON object: sites (their classes) and devices (device, site, name, tags, "
                        "iso_class, from, bearing)")
    s.add_argument("--db", type=db_arg, default=db_arg(default_db()), help=db_help)
    s.set_defaults(func=cmd_show)


def _open(db):
    from edgefleet.service.store import open_store

    return open_store(str(require_db(db)))


def _known(store, device: str, db) -> None:
    if store.device(device) is None:
        raise EdgefleetError(f"device {device!r} is not in {db_label(db)} (it has never reported)")


def cmd_name(args: argparse.Namespace) -> int:
    from edgefleet.service.machine_meta import check_name, with_name

    if (args.name is None) != args.unset:
        raise EdgefleetError('give a name (e.g. "Pump 3") or --unset')
    name = None if args.unset else check_name(args.name)  # a bad name: one line before the store is opened
    store = _open(args.db)
    try:
        _known(store, args.device, args.db)
        store.set_machine_meta(args.device, with_name(store.machine_meta().get(args.device), name))
    finally:
        store.close()
    print(f"device {args.device}: " + (f"named {name!r}" if name else "name removed"))
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    from edgefleet.service.machine_meta import parse_tag, tag_words, with_tags

    if not args.tags and not args.remove:
        raise EdgefleetError("give tags as KEY=VALUE (e.g. type=pump) or --remove KEY")
    for text in args.tags:
        parse_tag(text)  # a bad tag: one line before the store is opened
    store = _open(args.db)
    try:
        _known(store, args.device, args.db)
        meta = with_tags(store.machine_meta().get(args.device), args.tags, args.remove)
        store.set_machine_meta(args.device, meta)
    finally:
        store.close()
    print(f"device {args.device}: tags {tag_words(meta.get('tags')) or 'none'}")
    return 0


def _known_site(store, site: str, db, *, new_site: bool, unset: bool) -> None:
    """A site some device reports from, or one that already has a class (set with --new-site);
    `new_site` vouches for one whose nodes have not reported yet. Else one line naming the known sites."""
    reported = {d.site for d in store.devices() if d.site}
    configured = set(store.machine_classes()["site"])
    if site in reported or site in configured or (new_site and not unset):
        return
    if unset:
        raise EdgefleetError(f"site {site!r} has no class set in {db_label(db)} (sites with one: "
                             f"{', '.join(sorted(configured)) or 'none'})")
    raise EdgefleetError(f"no device at site {site!r} in {db_label(db)} (sites: "
                         f"{', '.join(sorted(reported | configured)) or 'none'}); a site whose nodes have not "
                         f"reported yet: add --new-site")


def cmd_class(args: argparse.Namespace) -> int:
    from edgefleet.service.iso20816 import DEFAULT_CLASS, machine_class

    if bool(args.cls) == bool(args.unset):
        raise EdgefleetError("give a class (I, II, III or IV) or --unset")
    if args.new_site and args.site is None:
        raise EdgefleetError("--new-site goes with --site (a device must have reported to get a class)")
    cls = None if args.unset else machine_class(args.cls)  # a bad name: one line before the store is opened
    store = _open(args.db)
    try:
        if args.device is not None and store.device(args.device) is None:
            raise EdgefleetError(f"device {args.device!r} is not in {db_label(args.db)} (it has never reported)")
        if args.site is not None:
            _known_site(store, args.site, args.db, new_site=args.new_site, unset=bool(args.unset))
        store.set_machine_class(cls, device=args.device, site=args.site)
    finally:
        store.close()
    what = f"device {args.device}" if args.device is not None else f"site {args.site}"
    print(f"{what}: ISO 20816 class {cls}" if cls else
          f"{what}: class unset ({'its site' if args.device is not None else 'its devices'} "
          f"now decide, else {DEFAULT_CLASS})")
    return 0


def cmd_bearing(args: argparse.Namespace) -> int:
    given = [x is not None for x in (args.balls, args.ball_d, args.pitch_d)]
    if args.unset == any(given) or (any(given) and not all(given)):
        raise EdgefleetError("give --balls, --ball-d and --pitch-d (and --contact), or --unset")
    geometry = None if args.unset else {"n_balls": args.balls, "ball_d_mm": args.ball_d, "pitch_d_mm": args.pitch_d,
                                        "contact_deg": args.contact}
    store = _open(args.db)
    try:
        if store.device(args.device) is None:
            raise EdgefleetError(f"device {args.device!r} is not in {db_label(args.db)} (it has never reported)")
        store.set_bearing(args.device, geometry)
        if geometry is not None:
            geometry = store.bearings()[args.device]
    finally:
        store.close()
    if geometry is None:
        print(f"device {args.device}: bearing geometry removed")
        return 0
    from edgefleet.runtime.diagnosis import BearingGeometry

    orders = BearingGeometry(geometry["n_balls"], geometry["ball_d_mm"], geometry["pitch_d_mm"],
                             geometry["contact_deg"]).orders()
    print(f"device {args.device}: bearing {geometry['n_balls']} x {geometry['ball_d_mm']:g} mm on "
          f"{geometry['pitch_d_mm']:g} mm, {geometry['contact_deg']:g} deg: BPFO {orders['bpfo']:.3f}x, "
          f"BPFI {orders['bpfi']:.3f}x, BSF {orders['bsf']:.3f}x the shaft speed")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from edgefleet.service.iso20816 import class_for

    store = _open(args.db)
    try:
        classes, bearings, meta = store.machine_classes(), store.bearings(), store.machine_meta()
        rows = [(d.device, d.site, *class_for(d.device, d.site, classes["device"], classes["site"]),
                 bearings.get(d.device), meta.get(d.device, {})) for d in store.devices()]
    finally:
        store.close()
    if args.json:
        print(json.dumps({"sites": classes["site"], "devices": [
            {"device": d, "site": s, "name": m.get("name"), "tags": m.get("tags", {}), "iso_class": c, "from": w,
             "bearing": b} for d, s, c, w, b, m in rows]}, indent=1))
        return 0
    for site, cls in sorted(classes["site"].items()):
        print(f"site {site}: class {cls}")
    from edgefleet.service.machine_meta import tag_words

    for d, s, c, w, b, m in rows:
        bearing = (f"  bearing {b['n_balls']} x {b['ball_d_mm']:g} mm on {b['pitch_d_mm']:g} mm" if b else "")
        named = (f"  {m['name']!r}" if m.get("name") else "") + (f"  [{tag_words(m.get('tags'))}]" if m.get("tags") else "")
        print(f"{d:<24} {s or '-':<16} class {c:<3} ({w}){bearing}{named}")
    if not rows:
        print(f"no devices in {db_label(args.db)}")
    return 0
