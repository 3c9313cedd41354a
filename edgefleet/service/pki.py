"""A small fleet PKI on `cryptography`: one CA, the broker's server certificate, one client
certificate per device or service (common name = its id, which Mosquitto's
`use_identity_as_username` makes the MQTT username), and a CRL of revoked certificates.

Files in one directory (`edgefleet pki`, default var/pki): ca.crt, ca.key, server.crt, server.key,
NAME.crt and NAME.key per client, crl.pem, revoked.json. Private keys are ECDSA P-256, written
0600 and never printed. Keep ca.key off the broker host if you can: only ca.crt, server.* and
crl.pem are needed there.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgefleet.errors import ConfigError
from edgefleet.protocol.codec import DEVICE_ID_RE

CA_DAYS = 3650
LEAF_DAYS = 825  # the CA/Browser Forum's former cap; devices get re-issued within it
RESERVED = ("ca", "server", "crl", "revoked")


@dataclass(frozen=True)
class CertInfo:
    name: str
    kind: str  # "ca", "server" or "client"
    serial: int
    not_after: dt.datetime
    revoked: bool


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_pem(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _load_ca(d: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not (d / "ca.crt").is_file() or not (d / "ca.key").is_file():
        raise ConfigError(f"{d}: no CA (ca.crt and ca.key); run `edgefleet pki init --dir {d}` first")
    mode = (d / "ca.key").stat().st_mode & 0o077
    if mode:
        raise ConfigError(f"{d / 'ca.key'} is readable by others (mode {oct(mode)}): chmod 600 it")
    try:
        cert = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{d}: ca.crt/ca.key cannot be read ({exc})") from None
    return cert, key  # type: ignore[return-value]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgefleet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(out)


def init(pki_dir: str | Path, *, server_names: list[str], days: int = CA_DAYS, force: bool = False) -> list[Path]:
    """A new CA and a server certificate for `server_names` (host names and IP addresses the
    clients use). Refuses to replace an existing CA unless `force` (every certificate it issued
    would stop working)."""
    d = Path(pki_dir)
    if (d / "ca.key").exists() and not force:
        raise ConfigError(f"{d} already holds a CA (ca.key); --force replaces it and invalidates every "
                          "certificate it issued")
    if not server_names:
        raise ConfigError("the server certificate needs at least one name (--san HOST)")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(_name("edgefleet fleet CA")).issuer_name(_name("edgefleet fleet CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(d / "ca.key", key)
    _write_pem(d / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
    (d / "revoked.json").unlink(missing_ok=True)
    (d / "crl.pem").unlink(missing_ok=True)
    write_crl(d)
    return [d / "ca.crt", d / "ca.key", *issue(d, "server", server=True, sans=server_names, days=min(LEAF_DAYS, days)),
            d / "crl.pem"]


def issue(pki_dir: str | Path, name: str, *, server: bool = False, sans: list[str] | None = None,
          days: int = LEAF_DAYS, not_before: dt.datetime | None = None) -> list[Path]:
    """A certificate signed by the CA: a client one (CN = `name`, a device or service id) or, with
    `server`, the broker's (subjectAltName = `sans`). Writes NAME.crt and NAME.key (0600)."""
    d = Path(pki_dir)
    if server:
        if not sans:
            raise ConfigError("a server certificate needs at least one name (--san HOST)")
    elif not DEVICE_ID_RE.search(name) or name in RESERVED:
        raise ConfigError(f"certificate name {name!r}: 1-64 of [A-Za-z0-9._-], not one of {', '.join(RESERVED)}")
    if days < 1:
        raise ConfigError(f"--days {days}: a certificate must be valid for at least 1 day")
    ca_cert, ca_key = _load_ca(d)
    start = not_before or (_now() - dt.timedelta(minutes=5))
    most = max_days(ca_cert, start)
    if days > most:  # a certificate that outlives its CA stops verifying when the CA expires, silently early
        raise ConfigError(f"--days {days}: the certificate would expire {_day(start, days)}, after its CA "
                          f"({d / 'ca.crt'}) expires {ca_cert.not_valid_after_utc:%Y-%m-%d}; at most {most} days"
                          + ("" if most >= 1 else " (the CA has expired: `edgefleet pki init --force` makes a new one)"))
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                      content_commitment=False, key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if sans:
        b = b.add_extension(_san(sans), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    _write_key(d / f"{name}.key", key)
    _write_pem(d / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
    return [d / f"{name}.crt", d / f"{name}.key"]


def max_days(ca_cert: x509.Certificate, start: dt.datetime) -> int:
    """Whole days a certificate starting at `start` may last without outliving `ca_cert` (0 or less:
    the CA has expired, or expires within a day)."""
    return (ca_cert.not_valid_after_utc - start) // dt.timedelta(days=1)


def ca_days_left(pki_dir: str | Path) -> int:
    """Whole days a certificate issued now may last without outliving the directory's CA."""
    ca_cert, _ = _load_ca(Path(pki_dir))
    return max_days(ca_cert, _now() - dt.timedelta(minutes=5))


def _day(start: dt.datetime, days: int) -> str:
    """start + days as a date, also when that is past the year 9999 (a `--days 100000000`)."""
    try:
        return f"{start + dt.timedelta(days=days):%Y-%m-%d}"
    except OverflowError:
        return f"in {days / 365.25:,.0f} years"


def _revoked(d: Path) -> dict[str, str]:
    p = d / "revoked.json"
    return json.loads(p.read_text()) if p.is_file() else {}  # serial (hex) -> name


def write_crl(pki_dir: str | Path, days: int = CA_DAYS) -> Path:
    """crl.pem: every revoked serial, signed by the CA. Its next update is `days` away (10 years):
    the broker is its only reader, and OpenSSL refuses every client once a loaded CRL has expired."""
    d = Path(pki_dir)
    ca_cert, ca_key = _load_ca(d)
    now = _now()
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
         .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=days)))
    for serial in _revoked(d):
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
                                      .revocation_date(now).build())
    _write_pem(d / "crl.pem", b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return d / "crl.pem"


def revoke(pki_dir: str | Path, name: str) -> Path:
    """Put NAME's certificate on the CRL (the broker must reload it: restart or SIGHUP Mosquitto)."""
    d = Path(pki_dir)
    crt = d / f"{name}.crt"
    if name in RESERVED or not crt.is_file():
        raise ConfigError(f"{d}: no client certificate {name!r} (see `edgefleet pki list`)")
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    revoked = _revoked(d)
    revoked[format(cert.serial_number, "x")] = name
    (d / "revoked.json").write_text(json.dumps(revoked, indent=1) + "\n")
    return write_crl(d)


def listing(pki_dir: str | Path) -> list[CertInfo]:
    d = Path(pki_dir)
    if not (d / "ca.crt").is_file():
        raise ConfigError(f"{d}: no CA; run `edgefleet pki init --dir {d}` first")
    revoked = _revoked(d)
    out = []
    for crt in sorted(d.glob("*.crt")):
        try:
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
        except ValueError:
            continue
        name = crt.stem
        kind = "ca" if name == "ca" else "server" if name == "server" else "client"
        out.append(CertInfo(name, kind, cert.serial_number, cert.not_valid_after_utc,
                            format(cert.serial_number, "x") in revoked))
    return out
