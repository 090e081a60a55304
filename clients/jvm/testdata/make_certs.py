"""Writes the TLS certificates the JVM authentication and TLS tests use.

Usage: python make_certs.py OUT_DIR

Needs trustme (in the project venv: tests/python/requirements.txt). Writes, all PEM:

  OUT_DIR/ca.pem                 the CA that signed the server's certificate
  OUT_DIR/server.pem, server.key the server's chain and key (SAN IP:127.0.0.1, DNS:localhost)
  OUT_DIR/client-ca.pem          the CA the server trusts for client certificates (--tls-client-ca)
  OUT_DIR/client.pem             a client certificate (CN=ci-job, SAN DNS:ci-job.clients.sheaf.test)
                                 signed by client-ca
  OUT_DIR/client.key             its key, PKCS#8 ("BEGIN PRIVATE KEY", what Arrow Java reads)
  OUT_DIR/client-sec1.key        the same key in SEC1 form ("BEGIN EC PRIVATE KEY")
  OUT_DIR/other-ca.pem           a CA nobody trusts
  OUT_DIR/other-client.pem, other-client.key  a client certificate (CN=ci-job) signed by other-ca

Every run makes new keys: nothing secret is kept in the repository.

Client certificates carry a subject alternative name: Java refuses a certificate whose SAN
extension is empty, which is what trustme writes for `issue_cert(common_name=...)` alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization


def pkcs8(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def chain(cert: trustme.LeafCert) -> bytes:
    return b"".join(blob.bytes() for blob in cert.cert_chain_pems)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    (out / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (out / "server.pem").write_bytes(chain(server))
    (out / "server.key").write_bytes(server.private_key_pem.bytes())

    client_ca = trustme.CA()
    client = client_ca.issue_cert("ci-job.clients.sheaf.test", common_name="ci-job")
    (out / "client-ca.pem").write_bytes(client_ca.cert_pem.bytes())
    (out / "client.pem").write_bytes(chain(client))
    (out / "client.key").write_bytes(pkcs8(client.private_key_pem.bytes()))
    (out / "client-sec1.key").write_bytes(client.private_key_pem.bytes())

    other_ca = trustme.CA()
    other = other_ca.issue_cert("ci-job.clients.sheaf.test", common_name="ci-job")
    (out / "other-ca.pem").write_bytes(other_ca.cert_pem.bytes())
    (out / "other-client.pem").write_bytes(chain(other))
    (out / "other-client.key").write_bytes(pkcs8(other.private_key_pem.bytes()))


if __name__ == "__main__":
    main()
