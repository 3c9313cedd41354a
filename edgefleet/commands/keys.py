"""`edgefleet keys ...`: the Ed25519 key that signs model manifests."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgefleet.runtime import keys
from edgefleet.service.audit import recorded


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="create and show the model-signing key",
                       description="Manifests are signed with an Ed25519 key that stays in the engineer's "
                       "key file; devices and the fleet service hold only the public key.")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = ks.add_parser("generate", help="create a key pair (private PEM 0600, public PEM beside it as .pub)")
    g.add_argument("--out", type=Path, default=keys.DEFAULT_KEY, help=f"private key path (default {keys.DEFAULT_KEY})")
    g.add_argument("--force", action="store_true", help="overwrite an existing key")
    g.set_defaults(func=recorded("keys.generate", lambda a: str(a.out), cmd_generate))
    s = ks.add_parser("show", help="print the key id and the raw public key in hex")
    s.add_argument("--key", type=Path, default=keys.DEFAULT_KEY)
    s.set_defaults(func=cmd_show)
    v = ks.add_parser("verify", help="verify a model folder's signed manifest against a public key")
    v.add_argument("model_dir", type=Path)
    v.add_argument("--public", type=Path, default=None, help="public key (default: the signing key's .pub)")
    v.set_defaults(func=cmd_verify)


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
