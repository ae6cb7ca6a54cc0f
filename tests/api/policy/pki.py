"""
Certificates made at test time: a CA, a server certificate for 127.0.0.1,
and client certificates with the names a policy matches (CN, O, OU, SAN
DNS, URI and e-mail).
"""

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def client_certificate(
    cn: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    o: str | None = None,
    ou: str | None = None,
    dns: tuple[str, ...] = (),
    uri: tuple[str, ...] = (),
    email: tuple[str, ...] = (),
    issuer: str = "policy test CA",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A client certificate with these names, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if o is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    if ou is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    names: list[x509.GeneralName] = [
        *(x509.DNSName(n) for n in dns),
        *(x509.UniformResourceIdentifier(u) for u in uri),
        *(x509.RFC822Name(e) for e in email),
    ]
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(names), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(directory: Path, name: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:  # fmt: skip
    cert_path = directory / f"{name}-cert.pem"
    key_path = directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


class PolicyPKI:
    """
    A CA and a server certificate in C{directory}; L{client} adds clients.

    @ivar ca: The CA certificate's file.
    @ivar server_cert: The server's certificate (for 127.0.0.1).
    @ivar server_key: Its key.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "policy test CA")])
        now = dt.datetime.now(dt.UTC)
        ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.BasicConstraints(ca=True, path_length=None), critical=True
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca = str(directory / "ca.pem")
        Path(self.ca).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server")])
            )
            .issuer_name(name)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.server_cert, self.server_key = _write(
            directory, "server", server, server_key
        )

    def client(self, name: str, cn: str, **names: object) -> tuple[str, str]:
        """A client certificate signed by the CA: its and its key's files."""
        cert, key = client_certificate(cn, self._key, **names)  # type: ignore[arg-type]
        return _write(self.directory, name, cert, key)
