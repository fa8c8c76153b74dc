#!/usr/bin/env python3
"""Hostile TLS clients for tests/tests/hostile_tls.rs, written with tlslite-ng.

Each case does one thing an honest client never does (or does something unusual that must
still work), then sends one HTTP/1.1 request and reads the answer. Prints one JSON line:
{"case", "alert", "alert_name", "status_line", "error"}: the fatal alert the server sent (if
any), the response's status line (if one came) and what else went wrong.

Certificates it needs beyond the test's own PKI (a chain of 50, a 100 KB certificate) are
made here with `cryptography`, issued by the CA whose certificate and key the test passes.
"""

import argparse
import datetime
import json
import socket
import struct
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

import tlslite.recordlayer as recordlayer_module
import tlslite.tlsconnection as tlsconnection_module
from tlslite.api import HandshakeSettings, TLSConnection, X509CertChain, parsePEMKey
from tlslite.constants import AlertDescription, ContentType, HandshakeType, SignatureScheme
from tlslite.errors import TLSAbruptCloseError, TLSLocalAlert, TLSRemoteAlert
from tlslite.messages import Certificate, CertificateRequest, Message

# --- certificates made here -------------------------------------------------------------


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(issuer_cert, issuer_key, cn, ca, extra=None):
    """A P-256 certificate for `cn` issued by (issuer_cert, issuer_key); (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False
        )
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _load_ca(args):
    with open(args.ca_cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(args.ca_key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    return cert, key


def long_chain(args, length):
    """A valid chain of `length` certificates (leaf first) ending just below the test CA."""
    ca_cert, ca_key = _load_ca(args)
    chain = []
    issuer = (ca_cert, ca_key)
    for i in range(length - 1):
        issuer = _issue(issuer[0], issuer[1], "Hostile CA %d" % (i + 1), ca=True)
        chain.append(issuer[0])
    leaf, key = _issue(issuer[0], issuer[1], "deep viewer", ca=False)
    # Leaf first, then its issuers up to (not including) the test CA.
    return [leaf] + list(reversed(chain)), key


def big_certificate(args, size):
    """A leaf of the test CA carrying a `size`-byte unrecognised extension."""
    ca_cert, ca_key = _load_ca(args)
    extra = x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x04\x83" + struct.pack(">I", size)[1:]
        + b"A" * size
    )
    leaf, key = _issue(ca_cert, ca_key, "big viewer", ca=False, extra=extra)
    return [leaf], key


# --- record protection in C ---------------------------------------------------------------


class FastAead:
    """tlslite-ng's AEAD interface over `cryptography`: its pure-Python AES-GCM takes most of a
    second for a 100 KB certificate, longer than the server lingers after refusing it."""

    def __init__(self, key, cipher, name):
        self.key = key
        self.isBlockCipher = False
        self.isAEAD = True
        self.nonceLength = 12
        self.tagLength = 16
        self.implementation = "cryptography"
        self.name = name
        self._cipher = cipher(bytes(key))

    def seal(self, nonce, plaintext, data):
        return bytearray(self._cipher.encrypt(bytes(nonce), bytes(plaintext), bytes(data)))

    def open(self, nonce, ciphertext, data):
        try:
            return bytearray(self._cipher.decrypt(bytes(nonce), bytes(ciphertext), bytes(data)))
        except InvalidTag:
            return None


recordlayer_module.createAESGCM = lambda key, impl=None: FastAead(
    key, AESGCM, "aes128gcm" if len(key) == 16 else "aes256gcm"
)
recordlayer_module.createCHACHA20 = lambda key, impl=None: FastAead(
    key, ChaCha20Poly1305, "chacha20-poly1305"
)


# --- message surgery ----------------------------------------------------------------------


def certificate_message(version, ders):
    """A Certificate handshake message carrying `ders` as they are (no parsing)."""
    entries = b""
    for der in ders:
        entries += struct.pack(">I", len(der))[1:] + der
        if version >= (3, 4):
            entries += b"\x00\x00"  # no extensions
    body = struct.pack(">I", len(entries))[1:] + entries
    if version >= (3, 4):
        body = b"\x00" + body  # empty certificate_request_context
    return bytearray(
        struct.pack("B", HandshakeType.certificate) + struct.pack(">I", len(body))[1:] + body
    )


def replace_certificate(ders):
    """Sends `ders` instead of whatever Certificate message tlslite built."""
    original = TLSConnection._sendMsg

    def send(self, msg, *rest, **kw):
        if isinstance(msg, Certificate):
            msg = Message(ContentType.handshake, certificate_message(self.version, ders))
        return original(self, msg, *rest, **kw)

    TLSConnection._sendMsg = send


def pretend_server_allows(schemes):
    """Makes the client believe the CertificateRequest listed only `schemes`, so it signs the
    CertificateVerify with an algorithm the server did not offer."""
    original = CertificateRequest.parse

    def parse(self, parser):
        result = original(self, parser)
        self.supported_signature_algs = list(schemes)
        return result

    CertificateRequest.parse = parse


def count_records(out):
    """Counts the records the client sends and the largest, into `out`."""
    out["records_sent"] = 0
    out["largest_record"] = 0
    original = TLSConnection._sendMsgThroughSocket

    def send(self, msg, *rest, **kw):
        out["records_sent"] += 1
        out["largest_record"] = max(out["largest_record"], len(msg.write()))
        return original(self, msg, *rest, **kw)

    TLSConnection._sendMsgThroughSocket = send


class WrongKey:
    """A private key that signs with another key but claims its signatures verify."""

    def __init__(self, real, other):
        self._real = real
        self._other = other

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __len__(self):
        return len(self._real)

    def sign(self, *a, **kw):
        return self._other.sign(*a, **kw)

    def hashAndSign(self, *a, **kw):
        return self._other.hashAndSign(*a, **kw)

    def verify(self, *a, **kw):
        return True

    def hashAndVerify(self, *a, **kw):
        return True


# --- the client ------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--case", required=True)
    p.add_argument("--sni", default="localhost")
    p.add_argument("--cert", help="client chain (PEM)")
    p.add_argument("--key", help="client key (PEM)")
    p.add_argument("--ca-cert", help="CA that issues made-up certificates")
    p.add_argument("--ca-key")
    p.add_argument("--tls", default="1.3", choices=["1.2", "1.3"])
    args = p.parse_args()

    version = (3, 4) if args.tls == "1.3" else (3, 3)
    settings = HandshakeSettings()
    settings.minVersion = version
    settings.maxVersion = version
    # RFC 8879 compression is off on both sides: tlslite-ng would otherwise send its
    # Certificate compressed although the server never offered it.
    settings.certificate_compression_send = []
    settings.certificate_compression_receive = []

    chain = key = None
    if args.cert:
        with open(args.cert) as f:
            chain = X509CertChain()
            chain.parsePemList(f.read())
        with open(args.key) as f:
            key = parsePEMKey(f.read(), private=True)
    sni = args.sni
    record_size = None

    case = args.case
    if case == "honest":
        pass
    elif case == "garbage-der":
        # The leaf's DER is noise; the rest of the handshake is honest.
        replace_certificate([b"\x30\x82\x01\x00" + b"\xa5" * 256])
    elif case == "garbage-der-chain":
        # An honest leaf followed by a chain certificate of noise.
        replace_certificate([bytes(chain.x509List[0].writeBytes()), b"\x30\x03\x02\x01\x00"])
    elif case == "empty-list":
        chain = key = None  # tlslite sends an empty Certificate message
    elif case == "wrong-key":
        other = parsePEMKey(_key_pem(ec.generate_private_key(ec.SECP256R1())), private=True)
        key = WrongKey(key, other)
    elif case == "sha1-signature":
        settings.ecdsaSigHashes = ["sha1"] + list(settings.ecdsaSigHashes)
        # ECDSA with SHA-1; tlslite-ng's TLS 1.2 client also wants an RSA entry to be listed.
        pretend_server_allows([(2, 3), (2, 1)])
    elif case == "unoffered-signature":
        # ECDSA P-256 with SHA-256 (plus an RSA entry, as above; the key is ECDSA).
        pretend_server_allows([SignatureScheme.ecdsa_secp256r1_sha256, (4, 1)])
    elif case == "chain-of-50":
        certs, ckey = long_chain(args, 50)
        chain = X509CertChain()
        chain.parsePemList("".join(_pem(c) for c in certs))
        key = parsePEMKey(_key_pem(ckey), private=True)
    elif case == "certificate-100k":
        certs, ckey = big_certificate(args, 100 * 1024)
        chain = X509CertChain()
        chain.parsePemList("".join(_pem(c) for c in certs))
        key = parsePEMKey(_key_pem(ckey), private=True)
    elif case == "byte-records":
        record_size = 1
    elif case == "sni-16k":
        sni = "a" * 63 + ("." + "b" * 63) * 255  # 16,383 bytes of labels
        tlsconnection_module.is_valid_hostname = lambda name: True
    else:
        p.error("unknown case " + case)

    out = {"case": case, "alert": None, "alert_name": None, "status_line": None, "error": None}
    count_records(out)
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=20)
    conn = TLSConnection(sock)
    if record_size is not None:
        conn.recordSize = record_size
    try:
        conn.handshakeClientCert(chain, key, settings=settings, serverName=sni)
        request = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        conn.write(request.encode())
        data = b""
        while b"\r\n" not in data:
            chunk = conn.read(max=4096)
            if not chunk:
                break
            data += bytes(chunk)
        if b"\r\n" in data:
            out["status_line"] = data.split(b"\r\n", 1)[0].decode("latin-1")
    except TLSRemoteAlert as e:
        out["alert"] = e.description
        out["alert_name"] = AlertDescription.toStr(e.description)
    except (TLSLocalAlert, TLSAbruptCloseError, OSError, ValueError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        try:
            sock.close()
        except OSError:
            pass
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
