"""The certificate `serve --https` makes (once, private, for this machine's names) and the
checks on a user's own: the fast half; test_server_http serves real TLS with them."""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from stylecam.server.tls import TLSError, cache_dir, fingerprint, self_signed, server_context


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls") / "made" / "here")


def test_the_cache_follows_xdg_else_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "stylecam" / "tls"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unset in (lambda: monkeypatch.setenv("XDG_CACHE_HOME", ""), lambda: monkeypatch.delenv("XDG_CACHE_HOME")):
        unset()
        assert cache_dir() == tmp_path / "home" / ".cache" / "stylecam" / "tls"


def test_the_self_signed_certificate_names_this_machine_for_two_years(pair):
    cert_path, key_path = pair
    assert (cert_path.name, key_path.name, cert_path.parent.name) == ("cert.pem", "key.pem", "here")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    common = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    assert [a.value for a in common] == ["stylecam (self-signed)"] and cert.issuer == cert.subject
    extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    names = extension.value
    assert not extension.critical  # clients that do not know it still connect
    assert names.get_values_for_type(x509.DNSName) == ["localhost", socket.gethostname()]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    now = datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=5) <= now - cert.not_valid_before_utc < datetime.timedelta(minutes=6)  # a clock a little behind
    assert datetime.timedelta(days=799) < cert.not_valid_after_utc - now < datetime.timedelta(days=800)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
    assert key_path.stat().st_mode & 0o777 == 0o600


def test_it_is_made_once_and_remade_when_half_is_missing(pair, tmp_path):
    cert_path, key_path = pair
    before = cert_path.read_bytes(), key_path.read_bytes()
    assert self_signed(cert_path.parent) == pair and (cert_path.read_bytes(), key_path.read_bytes()) == before
    fresh = tmp_path / "fresh"
    cert, key = self_signed(fresh)
    key.unlink()
    old = cert.read_bytes()
    assert self_signed(fresh) == (cert, key) and key.is_file() and cert.read_bytes() != old


def test_a_server_context_takes_the_pair_and_asks_no_client_certificate(pair):
    context = server_context(*pair)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname  # browsers bring none


def test_unusable_files_are_a_tls_error_naming_both(pair, tmp_path):
    cert, key = pair
    other_key = self_signed(tmp_path / "other")[1]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    for c, k in [(garbage, key), (cert, garbage), (cert, other_key), (tmp_path / "missing.pem", key)]:
        with pytest.raises(TLSError) as e:
            server_context(c, k)
        message = str(e.value)
        assert message.startswith(f"--cert {c} --key {k}: cannot be used (") and "\n" not in message
        assert message.endswith("); pass a PEM certificate and its key")


def test_the_fingerprint_is_what_browsers_show(pair):
    cert = x509.load_pem_x509_certificate(pair[0].read_bytes())
    expected = cert.fingerprint(hashes.SHA256())
    assert fingerprint(pair[0]) == ":".join(f"{b:02X}" for b in expected)
    assert len(fingerprint(pair[0])) == 95 and expected == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
