"""Ed25519 signing keys for model manifests (the `cryptography` package).

The private key stays in the engineer's key file (PEM, mode 0600); devices and
the fleet service hold only the 32-byte public key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgefleet.errors import SignatureError

DEFAULT_KEY = Path(os.environ.get("EDGEFLEET_SIGNING_KEY", Path.home() / ".config/edgefleet/signing.key"))


def key_id(public: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw public key: names a key in manifests."""
    return hashlib.sha256(public_raw(public)).hexdigest()[:16]


def public_raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate(path: Path, *, overwrite: bool = False) -> Ed25519PrivateKey:
    """New key pair: private PEM at `path` (0600), public PEM at `path.pub`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise SignatureError(f"{path} exists; refusing to overwrite a signing key (use --force)")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path(path).write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


def public_path(private_path: Path) -> Path:
    return Path(str(private_path) + ".pub")


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise SignatureError(f"no signing key at {path}; create one with `edgefleet keys generate`") from exc
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an Ed25519 key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read the public key {path}: {exc.strerror or exc}") from exc
    try:
        key = (Ed25519PublicKey.from_public_bytes(data) if len(data) == 32
               else serialization.load_pem_public_key(data))
    except ValueError as exc:
        raise SignatureError(f"{path} is not an Ed25519 public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path} is not an Ed25519 public key")
    return key


def load_or_create(path: Path | None = None) -> tuple[Ed25519PrivateKey, bool]:
    """The engineer's key, created on first use; returns (key, created)."""
    p = Path(path or DEFAULT_KEY)
    if p.exists():
        return load_private(p), False
    return generate(p), True
