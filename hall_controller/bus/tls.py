"""The hall's own certificate authority, the broker's certificate, and the TLS context of every client.

Production MQTT between the hall PC and the app PCs runs over TLS (`mqtts://`, port 8883): passwords
and events no longer cross the hall LAN in clear. A hall has no public name a public CA would vouch
for, so it has its own CA (`hallctl tls init`): a key that never leaves the hall PC and a self-signed
certificate that every app PC is given (`ca.crt`) and trusts for this hall only. The CA signs the
broker's certificate for the names and addresses the app PCs use to reach the hall PC; each client
checks the broker's certificate against `ca.crt` and its name against the host in its `mqtts://` URL
(`client_context`), so a PC that answers on the hall PC's address without the hall's key is refused.

Keys are ECDSA P-256 (quick to make, understood by Mosquitto's OpenSSL and Python's ssl), written
0600. Replacing the CA is deliberate (`force`): every app PC trusts the old one and has to be given
the new `ca.crt`. Re-issuing the broker's certificate (a new address, nearing its end) is not: the
app PCs keep working with the same CA.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..clock import Clock, SystemClock
from .credentials import write_private

log = logging.getLogger(__name__)

CA_DAYS = 3650            # the CA outlives many broker certificates: app PCs are given it once
SERVER_DAYS = 825         # the broker's certificate; `hallctl tls renew` (or the install) issues a new one
RENEW_BEFORE = timedelta(days=30)   # ensure_hall_ca re-issues a broker certificate this close to its end
BACKDATE = timedelta(hours=1)       # an app PC whose clock is a little behind still accepts a new certificate
CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.crt", "ca.key", "server.crt", "server.key"


class TlsFiles(NamedTuple):
    """The hall CA and the broker's certificate, as files (PEM)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


class TlsSetupError(ValueError):
    """The hall's TLS files cannot be made or used as asked; the message says why and what to do."""


class CaExists(TlsSetupError):
    """A hall CA is already there and replacing it was not asked for."""


def tls_files(directory: str | os.PathLike[str]) -> TlsFiles:
    folder = Path(directory)
    return TlsFiles(folder / CA_CERT, folder / CA_KEY, folder / SERVER_CERT, folder / SERVER_KEY)


def default_names() -> tuple[list[str], list[str]]:
    """The broker certificate's names when none are given: this PC's hostname and the loopback."""
    hosts = [socket.gethostname(), "localhost"]
    return [h for i, h in enumerate(hosts) if h and h not in hosts[:i]], ["127.0.0.1"]


def _split_names(hosts: list[str], ips: list[str]) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """Host names and IP addresses for the SAN; an address given as a host counts as an address."""
    dns: list[str] = []
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name in [*hosts, *ips]:
        name = name.strip()
        try:
            address = ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            if name in ips:
                raise TlsSetupError(f"不是 IP 地址：{name!r} / not an IP address: {name!r}") from None
            if not name or not name.isascii() or any(c.isspace() or c in "/:@" for c in name):
                raise TlsSetupError(f"主机名无效：{name!r}（只用英文字母、数字、点和连字符） / bad host name {name!r}") \
                    from None
            if name.lower() not in dns:
                dns.append(name.lower())
        else:
            if address not in addresses:
                addresses.append(address)
    if not dns and not addresses:
        raise TlsSetupError("至少给出一个 --host 或 --ip / give at least one --host or --ip")
    return dns, addresses


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    write_private(path, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    os.chmod(path, 0o644)    # a certificate is public: the app PCs get ca.crt, Mosquitto reads server.crt


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode("ascii"))


def _load(files: TlsFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise TlsSetupError(f"无法读取大厅 CA（{files.ca_cert}, {files.ca_key}）：{exc} / cannot read the hall CA") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise TlsSetupError(f"{files.ca_key} 不是 {files.ca_cert} 的私钥 / the CA key does not match its certificate")
    return cert, key


def _create_ca(files: TlsFiles, hall_name: str, now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, hall_name[:64]),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{hall_name[:56]} Hall CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(files.ca_key, key)
    _write_cert(files.ca_cert, cert)
    log.info("hall CA created: %s (%s)", files.ca_cert, cert.subject.rfc4514_string())
    return cert, key


def _issue_server(files: TlsFiles, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: list[str],
                  ips: list[str], days: int, now: datetime) -> None:
    dns, addresses = _split_names(hosts, ips)
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + timedelta(days=days), ca.not_valid_after_utc)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns] + [x509.IPAddress(a) for a in addresses]
    cn = dns[0] if dns else str(addresses[0])
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_key(files.server_key, key)
    _write_cert(files.server_cert, cert)
    log.info("broker certificate issued: %s for %s, until %s", files.server_cert,
             ", ".join([*dns, *map(str, addresses)]), not_after.date().isoformat())


def _server_needs_issue(files: TlsFiles, ca: x509.Certificate, hosts: list[str], ips: list[str],
                        now: datetime) -> str | None:
    """Why the broker's certificate must be (re-)issued, or None when it serves as it is."""
    if not files.server_cert.exists() or not files.server_key.exists():
        return "missing"
    try:
        cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by this CA"
    dns, addresses = _split_names(hosts, ips)
    if set(subject_names(cert)) != {*(f"DNS:{d}" for d in dns), *(f"IP:{a}" for a in addresses)}:
        return "other names"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return "about to expire"
    return None


def hall_ca_exists(directory: str | os.PathLike[str]) -> bool:
    files = tls_files(directory)
    return files.ca_cert.exists() or files.ca_key.exists()


def ensure_hall_ca(directory: str | os.PathLike[str], hall_name: str, hosts: list[str] | None = None,
                   ips: list[str] | None = None, *, days: int = SERVER_DAYS, force: bool = False,
                   renew: bool = False, clock: Clock | None = None) -> TlsFiles:
    """The hall CA in `directory` (made when there is none; replaced only with `force`) and the broker's
    certificate for `hosts` and `ips` (default: `default_names()`), issued when it is missing, names
    other hosts, is not signed by this CA, nears its end, or `renew` asks. Safe to run again."""
    files = tls_files(directory)
    Path(directory).mkdir(parents=True, exist_ok=True)
    now = (clock or SystemClock()).now()
    if hosts is None and ips is None:
        hosts, ips = default_names()
    hosts, ips = list(hosts or []), list(ips or [])
    _split_names(hosts, ips)    # bad names fail before anything is written
    if force or not hall_ca_exists(directory):
        ca, ca_key = _create_ca(files, hall_name, now)
        why: str | None = "new CA"
    else:
        ca, ca_key = _load(files)
        why = "asked" if renew else _server_needs_issue(files, ca, hosts, ips, now)
    if why is not None:
        log.info("issuing the broker certificate (%s)", why)
        _issue_server(files, ca, ca_key, hosts, ips, days, now)
    return files


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CertInfo:
    """What `hallctl tls show` and `hallctl doctor` say about a certificate."""

    path: Path
    subject: str
    issuer: str
    names: tuple[str, ...]       # SAN entries as DNS:x / IP:y
    not_before: datetime
    not_after: datetime
    fingerprint: str             # SHA-256, colon-separated hex
    is_ca: bool


def subject_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)] + \
           [f"IP:{a}" for a in san.get_values_for_type(x509.IPAddress)]


def read_cert(path: str | os.PathLike[str]) -> CertInfo:
    """The certificate at `path`; TlsSetupError when it cannot be read."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsSetupError(f"无法读取证书 {path}：{exc} / cannot read the certificate") from None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return CertInfo(Path(path), cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                    tuple(subject_names(cert)), cert.not_valid_before_utc, cert.not_valid_after_utc,
                    ":".join(digest[i:i + 2] for i in range(0, len(digest), 2)), is_ca)


def signed_by(cert_path: str | os.PathLike[str], ca_path: str | os.PathLike[str]) -> bool:
    """True when the certificate at `cert_path` was signed by the CA at `ca_path`."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        ca = x509.load_pem_x509_certificate(Path(ca_path).read_bytes())
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return True


# ---------------------------------------------------------------------------------------------- clients


def client_context(ca: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """What every hall client connects with over `mqtts://`: TLS 1.2 or newer, the broker's certificate
    chained to `ca` (the hall CA; None = the system's CAs) and issued for the host connected to."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)     # CERT_REQUIRED and check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is None:
        context.load_default_certs()
        return context
    try:
        context.load_verify_locations(cafile=os.fspath(ca))
    except (OSError, ssl.SSLError) as exc:
        log.debug("CA file %s: %s", ca, exc)
        raise TlsSetupError(f"无法读取 CA 文件 {ca}（{getattr(exc, 'strerror', None) or exc}），"
                            f"请从大厅主机复制 ca.crt / cannot read the CA file {ca}") from None
    return context
