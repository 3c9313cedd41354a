"""`edgefleet keys ...`: the Ed25519 key that signs model manifests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgefleet.commands.helptext import Formatter, examples
from edgefleet.runtime import keys
from edgefleet.service.audit import recorded


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="create and show the model-signing key",
                       description="Manifests are signed with an Ed25519 key that stays in the engineer's "
                       "key file; devices and the fleet service hold only the public key.")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = ks.add_parser("generate", help="create a key pair (private PEM 0600, public PEM beside it as .pub)",
                      description="Creates an Ed25519 key pair: the private key as a PEM file readable by you "
                      "only (mode 0600), the public key beside it with .pub added. `model train` signs with it; "
                      "the fleet and the nodes get only the .pub.",
                      epilog=examples("edgefleet keys generate",
                                      "edgefleet keys generate --out keys/plant-2026.key"),
                      formatter_class=Formatter)
    g.add_argument("--out", type=Path, default=keys.DEFAULT_KEY, help=f"private key path (default {keys.DEFAULT_KEY})")
    g.add_argument("--force", action="store_true", help="overwrite an existing key")
    g.set_defaults(func=recorded("keys.generate", lambda a: str(a.out), cmd_generate))
    s = ks.add_parser("show", help="print the key id and the raw public key in hex",
                      description="Prints a private key's key id (as manifests and `keys list` name it) and its "
                      "raw 32-byte public key in hex (as a node's firmware embeds it).",
                      epilog=examples("edgefleet keys show", "edgefleet keys show --key keys/plant-2026.key"),
                      formatter_class=Formatter)
    s.add_argument("--key", type=Path, default=keys.DEFAULT_KEY,
                   help=f"private key file (default $EDGEFLEET_SIGNING_KEY or {keys.DEFAULT_KEY})")
    s.set_defaults(func=cmd_show)
    v = ks.add_parser("verify", help="verify a model folder's signed manifest against a public key",
                      description="Checks a model folder as a node would before taking it: the manifest's "
                      "signature against the public key, the artifact's size and SHA-256, and the model's "
                      "self-test vectors.",
                      epilog=examples("edgefleet keys verify edgefleet/models/fleet-v2 --public edgefleet/models/dev-signing.pub",
                                      "edgefleet keys verify models/cwru"),
                      formatter_class=Formatter)
    v.add_argument("model_dir", type=Path, help="model folder (manifest.json and model.efm)")
    v.add_argument("--public", type=Path, default=None, help="public key (default: the signing key's .pub)")
    v.set_defaults(func=cmd_verify)
    # OTA authorization (docs/ota.md): the keys the fleet trusts, kept in the fleet database's OTA
    # registry; each change is a keyset signed with a key the nodes already trust, carried in offers.
    from edgefleet.commands.fleet_db import db_arg as parse_db
    from edgefleet.commands.fleet_db import db_label
    from edgefleet.service.config import default_db

    def db_opt(q):
        q.add_argument("--db", type=parse_db, default=parse_db(default_db()),
                       help=f"fleet database (default $EDGEFLEET_DB or {db_label(default_db())})")

    t = ks.add_parser("trust", help="trust another public key for this fleet (models and/or campaign tickets)",
                      description="Adds a public key to the fleet's trusted keys (docs/ota.md): a new keyset, "
                      "signed with a key the nodes already trust, goes to the nodes with their next offer.",
                      epilog=examples("edgefleet keys trust next.key.pub --name k2026 --key ~/.config/edgefleet/signing.key",
                                      "edgefleet keys trust ota-manager.pub --name ota1 --role campaign"),
                      formatter_class=Formatter)
    t.add_argument("public", type=Path, help="the new key's public PEM (or 32 raw bytes)")
    t.add_argument("--name", required=True, help="a short name for the key")
    t.add_argument("--role", choices=("model", "campaign", "both"), default="model",
                   help="model: signs manifests and keysets; campaign: signs the OTA manager's tickets (default model)")
    t.add_argument("--key", type=Path, default=keys.DEFAULT_KEY,
                   help="a private key the fleet already trusts to sign models: it signs the new keyset "
                        f"(default $EDGEFLEET_SIGNING_KEY or {keys.DEFAULT_KEY})")
    db_opt(t)
    t.set_defaults(func=cmd_trust)
    r = ks.add_parser("retire", help="stop trusting a key: publish refuses it, nodes drop it with the next offer",
                      description="Removes a key from the fleet's trusted keys: `ota publish` refuses models it "
                      "signed, and a new keyset without it (signed by a key that stays) goes to the nodes with "
                      "their next offer.",
                      epilog=examples("edgefleet keys retire k2025 --key ~/.config/edgefleet/signing.key"),
                      formatter_class=Formatter)
    r.add_argument("name", help="key name or key id (`edgefleet keys list`)")
    r.add_argument("--key", type=Path, default=keys.DEFAULT_KEY, help="a trusted private key that stays: signs the keyset "
                   f"(default $EDGEFLEET_SIGNING_KEY or {keys.DEFAULT_KEY})")
    db_opt(r)
    r.set_defaults(func=cmd_retire)
    ls = ks.add_parser("list", help="the fleet's trusted and retired keys, and the keyset serial",
                       description="Lists the keys of the fleet's keyset: name, key id, roles (model, campaign) "
                       "and state (trusted, retired), and the serial of the newest keyset.",
                       epilog=examples("edgefleet keys list", "edgefleet keys list --db postgresql://ef@db/fleet"),
                       formatter_class=Formatter)
    db_opt(ls)
    ls.set_defaults(func=cmd_list)


def cmd_generate(args: argparse.Namespace) -> int:
    key = keys.generate(args.out, overwrite=args.force)
    print(f"wrote {args.out} (private, mode 0600) and {keys.public_path(args.out)}; "
          f"key id {keys.key_id(key.public_key())}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    pub = keys.load_private(args.key).public_key()
    print(f"key id  {keys.key_id(pub)}\npublic  {keys.public_raw(pub).hex()}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from edgefleet.runtime import manifest
    from edgefleet.toolchain.model_folder import ModelFolder

    folder = ModelFolder(args.model_dir)
    pub = keys.load_public(args.public or keys.public_path(keys.DEFAULT_KEY))
    body = manifest.verify(folder.manifest(), pub, folder.artifact_bytes())
    print(f"OK: {body['model_id']} v{body['version']}, {body['size']} B, sha256 {body['sha256'][:16]}…, "
          f"signed by {body['key_id']}, self-test passed")
    return 0


def _registry(db):
    from edgefleet.service.ota.registry import OtaRegistry

    return OtaRegistry(db)


def cmd_trust(args: argparse.Namespace) -> int:
    from edgefleet.runtime.trust import ROLE_NAMES
    from edgefleet.service.audit import cli_write

    pub = keys.load_public(args.public)
    signer = keys.load_private(args.key)
    serial = cli_write(args.db, "keys.trust", args.name, {"key_id": keys.key_id(pub), "role": args.role},
                       lambda: _registry(args.db).trust_key(pub, args.name, ROLE_NAMES[args.role], signer))
    print(f"trusted {args.name} (key id {keys.key_id(pub)}, role {args.role}); keyset {serial} signed by "
          f"{keys.key_id(signer.public_key())}: nodes take it with their next offer")
    return 0


def cmd_retire(args: argparse.Namespace) -> int:
    from edgefleet.service.audit import cli_write

    signer = keys.load_private(args.key)
    serial = cli_write(args.db, "keys.retire", args.name, {},
                       lambda: _registry(args.db).retire_key(args.name, signer))
    print(f"retired {args.name}; keyset {serial} (without it) goes to the nodes with their next offer")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from edgefleet.runtime.trust import roles_text

    reg = _registry(args.db)
    rows = reg.trusted_keys(all_states=True)
    if not rows:
        print("no trusted key yet: the first `edgefleet ota publish` pins its signer, or `edgefleet keys trust`")
        return 0
    for k in rows:
        print(f"{k['name']:16} {k['key_id']}  {roles_text(k['roles']):8} {k['state']}")
    sets = reg.keysets(1)
    from edgefleet.runtime.manifest import split

    serial = json.loads(split(sets[0])[0])["serial"] if sets else 0
    print(f"keyset serial {serial} (nodes provisioned with one key start at 0)")
    return 0
