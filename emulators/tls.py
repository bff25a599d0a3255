"""A local certificate authority, so the emulators speak HTTPS as the real services do.

Production reaches every cloud service over TLS; so do the tests, the benchmarks and the sandbox. One CA per
process is made at first use (in memory, nothing written into the repository): its certificate is written to
a temporary file, and a server certificate for 127.0.0.1 / localhost, signed by it, serves every emulator.
The product trusts the CA the way an operator trusts a corporate CA: `SSL_CERT_FILE=<ca file>`.
"""

from __future__ import annotations

import atexit
import datetime
import ipaddress
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)
# RSA 2048, as the public certificates of the real endpoints: the client's handshake cost is then realistic.
KEY_SIZE = 2048


@dataclass(frozen=True)
class LocalCa:
    """The CA's certificate (`ca_file`, what clients trust) and the emulators' server certificate and key."""

    ca_pem: bytes
    ca_file: Path
    server_cert_file: Path
    server_key_file: Path

    def write_ca(self, path: Path) -> Path:
        """Write the CA certificate (public) to `path`, e.g. next to a ready file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.ca_pem)
        return path

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only this CA (for helpers that ignore the environment)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AgentRun local emulators"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)


@cache
def local_ca() -> LocalCa:
    """This process's CA and server certificate (made once; the files go when the process exits)."""
    return make_ca()


def make_ca() -> LocalCa:
    """A new CA and server certificate (tests make a second one: a server no client here trusts)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, server_key = _key(), _key()
    ca_name = _name("AgentRun local emulator CA")
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=False, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                   encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    server_cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_name)
                   .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
                   .add_extension(x509.SubjectAlternativeName([
                       x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False)
                   .sign(ca_key, hashes.SHA256()))
    directory = Path(tempfile.mkdtemp(prefix="emulator-tls-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_pem)
    cert_file = directory / "server.pem"
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM) + ca_pem)
    key_file = directory / "server-key.pem"
    key_file.touch(mode=0o600)
    key_file.write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(key_file, 0o600)
    return LocalCa(ca_pem=ca_pem, ca_file=ca_file, server_cert_file=cert_file, server_key_file=key_file)
