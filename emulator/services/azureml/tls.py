"""The HTTPS identity of the Azure ML workspace: a CA per state dir and a server certificate.

The azureml-mlflow plugin, azureml-core and azure-ai-ml speak only ``https://`` to the workspace,
so the emulator needs a certificate they trust. ``ensure()`` creates, under ``<state>/azureml/tls``,
a private CA, a server certificate for the loopback and public host plus the real Azure names, and
``bundle.pem`` = the system CAs + the emulator CA, for ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``.

That bundle makes the CA trusted for everything a client does, so the CA can vouch for nothing
else: its name constraints permit only the server certificate's names (loopback and this
workspace's Azure hosts), and it lives a week. Each start (``emulator up``) renews it once a day has
passed, or when the names change; a restart within the day keeps it, so running clients' trust survives.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "MLflow Azure emulator local CA"
CA_LIFETIME = datetime.timedelta(days=7)
# A start renews a CA older than this (its certificate then has at least 6 days left).
CA_RENEW_AFTER = datetime.timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca-key.pem"

    @property
    def cert(self) -> Path:
        return self.dir / "server.pem"

    @property
    def key(self) -> Path:
        return self.dir / "server-key.pem"

    @property
    def bundle(self) -> Path:
        return self.dir / "bundle.pem"

    @property
    def names(self) -> Path:
        return self.dir / "names.json"


def files_for(role_dir: str | os.PathLike) -> TlsFiles:
    return TlsFiles(Path(role_dir) / "tls")


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _permitted(names: list[str]) -> x509.NameConstraints:
    """Only ``names``: with a DNS and an IP subtree present, no other DNS name or address is allowed."""
    subtrees = []
    for name in names:
        try:
            subtrees.append(x509.IPAddress(ipaddress.ip_network(name)))  # one address: a /32 or /128
        except ValueError:
            subtrees.append(x509.DNSName(name))
    return x509.NameConstraints(permitted_subtrees=subtrees, excluded_subtrees=None)


def _new_ca(files: TlsFiles, names: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mlflow-azure-emulator")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))  # small clock skew
            .not_valid_after(_now() + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            # fidelity: Security promises
            .add_extension(_permitted(names), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(files.ca_key, _pem_key(key))
    _write_private(files.ca, cert.public_bytes(serialization.Encoding.PEM))


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _new_server_cert(files: TlsFiles, names: list[str]) -> None:
    ca_cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(ca_cert.not_valid_before_utc)
            .not_valid_after(ca_cert.not_valid_after_utc)  # never outlives its CA
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(files.key, _pem_key(key))
    _write_private(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write_private(files.names, json.dumps(names).encode())


def system_ca_file() -> str | None:
    """The CAs this machine already trusts: the configured bundle, OpenSSL's, else certifi's."""
    for candidate in (os.environ.get("REQUESTS_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE"),
                      ssl.get_default_verify_paths().cafile):
        if candidate and Path(candidate).is_file():
            return candidate
    try:
        import certifi  # what requests trusts by default

        return certifi.where()
    except ImportError:
        return None


def _write_bundle(files: TlsFiles) -> None:
    system = system_ca_file()
    parts = [Path(system).read_bytes()] if system and Path(system).exists() else []
    parts.append(files.ca.read_bytes())
    data = b"\n".join(p.rstrip(b"\n") for p in parts) + b"\n"
    files.bundle.write_bytes(data)
    files.bundle.chmod(0o644)


def fetch_ca(files: TlsFiles, workspace_url: str, timeout: float = 5.0) -> bool:
    """Copy a running workspace's CA (``GET /__emulator/ca.pem``) and write the bundle beside it.

    For Docker mode, where the CA is generated inside the container's volume. False if unreachable.
    """
    import requests

    try:
        answer = requests.get(f"{workspace_url}/__emulator/ca.pem", timeout=timeout)
    except requests.RequestException:
        return False
    if answer.status_code != 200 or b"BEGIN CERTIFICATE" not in answer.content:
        return False
    files.dir.mkdir(parents=True, exist_ok=True)
    if not files.ca.exists() or files.ca.read_bytes() != answer.content:
        files.ca.write_bytes(answer.content)
        files.ca.chmod(0o644)
    _write_bundle(files)
    return True


def _ca_is_current(files: TlsFiles, names: list[str]) -> bool:
    """The CA exists, was made less than CA_RENEW_AFTER ago, and is constrained to exactly ``names``."""
    try:
        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        constraints = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    except (FileNotFoundError, ValueError, x509.ExtensionNotFound):
        return False  # none yet, or an older emulator's unconstrained ten-year CA
    return (files.ca_key.exists() and _now() - ca.not_valid_before_utc < CA_RENEW_AFTER
            and constraints == _permitted(names))


def ensure(role_dir: str | os.PathLike, names: list[str]) -> TlsFiles:
    """A current CA (see _ca_is_current), a server certificate for ``names`` and the CA bundle."""
    files = files_for(role_dir)
    files.dir.mkdir(parents=True, exist_ok=True)
    if not _ca_is_current(files, names):
        _new_ca(files, names)
        files.cert.unlink(missing_ok=True)
    try:
        current = json.loads(files.names.read_text())
        x509.load_pem_x509_certificate(files.cert.read_bytes())
    except (FileNotFoundError, ValueError):
        current = None
    if current != names:
        _new_server_cert(files, names)
    files.ca.chmod(0o644)  # the CA certificate is public; its key stays private
    _write_bundle(files)
    return files


def server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context
