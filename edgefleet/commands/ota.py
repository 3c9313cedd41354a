"""`edgefleet ota ...`: publish signed models and run staged rollouts.

The CLI only writes the registry; the OTA manager inside `edgefleet serve`
carries campaigns out (offers, chunks, stage decisions, rollback).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from edgefleet.commands.fleet_db import db_arg as parse_db
from edgefleet.commands.fleet_db import db_exists, db_label
from edgefleet.commands.helptext import Formatter, examples
from edgefleet.errors import EdgefleetError
from edgefleet.service.config import default_db


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ota", help="publish models and roll them out over the air",
                       description="Signed models roll out in stages (canaries first). The fleet service "
                       "advances a stage only when its devices confirmed the model, and aborts with an "
                       "automatic rollback on failures, timeouts, or a canary anomaly-rate shift.")
    os_ = p.add_subparsers(dest="ota_command", metavar="ACTION", required=True)

    def db_arg(q):
        q.add_argument("--db", type=parse_db, default=parse_db(default_db()),
                       help="fleet database, shared with `edgefleet serve`: a SQLite file or a postgresql:// URL "
                            f"(default $EDGEFLEET_DB or {db_label(default_db())})")

    pub = os_.add_parser("publish", help="verify a model folder's signed manifest and add it to the registry",
                         description="Checks the model folder's manifest (signature, artifact hash) against the key "
                         "the fleet's nodes trust and stores the artifact, manifest and card in the fleet database "
                         "under the model's version. Nothing is sent to devices yet: start a staged campaign with "
                         "`edgefleet ota rollout VERSION`. A version below the newest published one is refused "
                         "unless --allow-downgrade gives a reason.",
                         epilog=examples("edgefleet ota publish models/cwru",
                                         "edgefleet ota publish models/v2 --db var/edgefleet.db --public fleet.pub"),
                         formatter_class=Formatter)
    pub.add_argument("model_dir", type=Path,
                     help="model folder with a signed manifest.json (from `edgefleet model train`)")
    pub.add_argument("--public", type=Path, default=None,
                     help="public key the fleet's nodes trust (default $EDGEFLEET_OTA_PUBLIC_KEY, else the "
                          "signing key's .pub); the registry keeps the first one and refuses others")
    pub.add_argument("--trust-new-key", action="store_true",
                     help="also trust --public (older rotation; prefer `edgefleet keys trust`, which signs a keyset "
                          "the nodes follow)")
    pub.add_argument("--allow-downgrade", metavar="REASON", default=None,
                     help="publish a version below the newest published one; the reason is kept in the registry")
    db_arg(pub)
    pub.set_defaults(func=cmd_publish)

    ro = os_.add_parser("rollout", help="start a staged campaign for a published model version",
                        description="Records a campaign in the fleet database; the OTA manager inside `edgefleet "
                        "serve` carries it out: it offers the model to the first stage (canaries, 5% of the target "
                        "by default), waits for every device of the stage to confirm after its --trial, then moves "
                        "to the next stage. Too many failures (--abort-failures), a device silent past "
                        "--stage-timeout, or a canary anomaly rate grown by --abort-anomaly-shift abort the campaign "
                        "and roll updated devices back. One campaign runs at a time. Watch it with `edgefleet ota "
                        "status`, stop it with `edgefleet ota abort`.",
                        epilog=examples("edgefleet ota rollout 2",
                                        "edgefleet ota rollout 2 --target site=north --stages 5%,25%,100% --shadow 10"),
                        formatter_class=Formatter)
    ro.add_argument("version", type=int, help="model version (see `edgefleet ota status --models`)")
    ro.add_argument("--target", default="all", help="all | site=S | line=L | tag=T (default all)")
    ro.add_argument("--stages", default="5%,25%,100%", help="cumulative stage sizes (default 5%%,25%%,100%%)")
    ro.add_argument("--shadow", type=float, default=0.0, metavar="MINUTES",
                    help="shadow phase before the trial: the old model stays active and the new one scores "
                    "every window beside it, both reported; the canary health check compares them (default 0: no "
                    "shadow phase; at most 10080 = 7 days)")
    ro.add_argument("--trial", type=float, default=1.0, metavar="MINUTES",
                    help="trial period of the new model before a device confirms (default 1; 0 confirms at once; "
                    "at most 10080 = 7 days)")
    ro.add_argument("--abort-failures", default="10%", help="abort when more of a stage fails (default 10%%)")
    ro.add_argument("--abort-anomaly-shift", default="3x",
                    help="abort when canaries' anomaly rate grows by this factor (default 3x)")
    ro.add_argument("--stage-timeout", type=float, default=10.0, metavar="MINUTES",
                    help="a device without an outcome after this long (plus --shadow) counts as failed (default 10; at most 43200 = 30 days)")
    ro.add_argument("--retries", type=int, default=3, metavar="N",
                    help="offers again per device after a transient failure (download timeout, bad "
                    "chunk, reboot mid-download) before it counts as failed (default 3)")
    ro.add_argument("--offer-resend", type=float, default=30.0, metavar="SECONDS",
                    help="re-publish the offer to a device that has not answered it, or went silent "
                    "mid-download, after this long (default 30; at most 86400 = 1 day)")
    ro.add_argument("--id", default=None, help="campaign id (default c<version>-<UTC time>)")
    db_arg(ro)
    ro.set_defaults(func=cmd_rollout)

    st = os_.add_parser("status", help="campaigns with their state and devices per OTA state",
                        description="Lists every campaign (or the one named): its model, target, state (running, "
                        "aborting, aborted, completed), current stage and how many of its devices are in each OTA "
                        "state (offered, accepted, downloading, verifying, shadow, trial, confirmed, or rejected, "
                        "failed, reverted, timeout), with the reason a campaign stopped. --models lists the published models instead.",
                        epilog=examples("edgefleet ota status",
                                        "edgefleet ota status c2-20250101-120000 --json",
                                        "edgefleet ota status --models"),
                        formatter_class=Formatter)
    st.add_argument("campaign", nargs="?", help="campaign id (default: every campaign, oldest first)")
    st.add_argument("--json", action="store_true",
                    help="print one JSON object ({\"campaigns\": [...]}, or the list of models with --models)")
    st.add_argument("--models", action="store_true", help="list the registered models instead")
    db_arg(st)
    st.set_defaults(func=cmd_status)

    ab = os_.add_parser("abort", help="stop a campaign; devices that took the model roll back",
                        description="Marks a running campaign as aborting. The OTA manager in `edgefleet serve` then "
                        "withdraws its open offers and rolls every device that took the new model back to its "
                        "previous one; the campaign ends as aborted. A new campaign can start once the abort is "
                        "finished.",
                        epilog=examples("edgefleet ota abort c2-20250101-120000"),
                        formatter_class=Formatter)
    ab.add_argument("campaign", help="campaign id (`edgefleet ota status` lists them)")
    db_arg(ab)
    ab.set_defaults(func=cmd_abort)


def _registry(db: str | Path):
    from edgefleet.service.ota.registry import OtaRegistry

    return OtaRegistry(db)


def cmd_publish(args: argparse.Namespace) -> int:
    from edgefleet.runtime import keys
    from edgefleet.toolchain.model_folder import ModelFolder

    folder = ModelFolder(args.model_dir)
    fleet_key = os.environ.get("EDGEFLEET_OTA_PUBLIC_KEY")
    pub_path = args.public or (Path(fleet_key) if fleet_key else keys.public_path(keys.DEFAULT_KEY))
    # only needed to pin the first key: later the registry checks against the keys it trusts
    pub = keys.load_public(pub_path) if args.public or fleet_key or pub_path.exists() else None
    from edgefleet.service.audit import cli_write

    entry = cli_write(args.db, "model.publish", str(args.model_dir), {"trust_new_key": bool(args.trust_new_key),
                                                                      "allow_downgrade": args.allow_downgrade},
                      lambda: _registry(args.db).publish(folder.artifact_bytes(), folder.manifest(), folder.card(),
                                                         pub, trust_new_key=args.trust_new_key,
                                                         allow_downgrade=args.allow_downgrade))
    print(f"published {entry.model_id} v{entry.version} ({entry.size} B, sha256 {entry.sha256[:16]}…) "
          f"to {db_label(args.db)}; roll it out with `edgefleet ota rollout {entry.version}`")
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from edgefleet.service.ota.campaign import Policy, Target, parse_ratio

    policy = Policy.from_user(args.stages, trial_min=args.trial, shadow_min=args.shadow,
                              abort_failures=parse_ratio(args.abort_failures, "%"),
                              abort_anomaly_shift=parse_ratio(args.abort_anomaly_shift, "x"),
                              stage_timeout_min=args.stage_timeout, retries=args.retries,
                              offer_resend_s=args.offer_resend)
    target = Target.parse(args.target)
    _check_target_matches(args.db, args.target)
    from edgefleet.service.audit import cli_write

    c = cli_write(args.db, "campaign.start", args.id or f"model v{args.version}",
                  {"model": args.version, "target": args.target, "stages": args.stages},
                  lambda: _create_campaign(args.db, args.version, target, policy, args.id))
    print(f"campaign {c.id}: model v{c.model} to {c.target} in stages {args.stages}; "
          f"the OTA manager in `edgefleet serve` runs it. Watch with `edgefleet ota status {c.id}`")
    return 0


def _create_campaign(db: str | Path, version: int, target, policy, campaign_id: str | None):
    """One campaign at a time: the registry refuses a new one while one is running or still aborting,
    saying which and what ends it (the same refusal the dashboard's start form shows)."""
    reg = _registry(db)
    try:
        return reg.create_campaign(version, target, policy, campaign_id)
    finally:
        reg.close()


def _check_target_matches(db: str | Path, target: str) -> None:
    """A campaign for a target that names no device would "complete" with nobody updated: refuse it,
    listing what the store knows (nothing to check before any device has reported)."""
    from edgefleet.service.commissioning import target_devices
    from edgefleet.service.store import open_store

    if not db_exists(db):
        return
    store = open_store(str(db))
    try:
        known = store.devices()
        if not known:
            return
        try:
            target_devices(store, target)
        except EdgefleetError:
            sites = sorted({d.site for d in known if d.site})
            lines = sorted({d.line for d in known if d.line})
            tags = sorted({t for d in known for t in d.tags})
            raise EdgefleetError(f"--target {target} matches none of the {len(known)} devices in {db_label(db)}; known "
                                 f"sites: {', '.join(sites) or '-'}; lines: {', '.join(lines) or '-'}; "
                                 f"tags: {', '.join(tags) or '-'}") from None
    finally:
        store.close()


def cmd_status(args: argparse.Namespace) -> int:
    reg = _registry(args.db)
    if args.models:
        rows = [vars(m) for m in reg.models()]
        if not rows and not args.json:
            print(f"no model published in {db_label(args.db)} yet (edgefleet ota publish MODEL_DIR --db "
                  f"{db_label(args.db)})")
            return 0
        if args.json:
            print(json.dumps(rows))
        for m in rows if not args.json else []:
            auc = (m["card"].get("evaluation") or {}).get("auc_int8")
            print(f"v{m['version']:<4} {m['model_id']:20} {m['size']:6d} B  AUC {auc if auc is not None else '—'}")
        return 0
    status = reg.status(args.campaign)
    if args.json:
        print(json.dumps({"campaigns": status}))
        return 0
    if not status:
        print("no campaigns yet (edgefleet ota rollout VERSION)")
    for s in status:
        states = ", ".join(f"{k} {v}" for k, v in sorted(s["by_state"].items())) or "none offered yet"
        print(f"{s['campaign']}: model v{s['model']} -> {s['target']}, {s['state']}, stage {s['stage']}/"
              f"{len(s['stages'])} ({'/'.join(s['stages'])}), {s['devices']} devices: {states}"
              + (f"\n  reason: {s['reason']}" if s["reason"] else ""))
    return 0


def cmd_abort(args: argparse.Namespace) -> int:
    from edgefleet.service.audit import cli_actor, cli_write

    who = cli_actor().name
    c = cli_write(args.db, "campaign.abort", args.campaign, {},
                  lambda: _registry(args.db).abort(args.campaign, reason=f"aborted by {who} (cli)"))
    print(f"campaign {c.id} is aborting: the OTA manager clears its offers and rolls back updated devices")
    return 0
