"""What each certificate may do is written into it: CA, server, site, CRL."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import ConfigError, IntegrityError
from securefl.provision.pki import (
    SITE_URI_PREFIX,
    CertificateAuthority,
    build_crl,
    check_site_request,
    issue_server_cert,
    issue_site_cert,
    load_cert,
    load_crl,
    make_request,
    new_key,
    revoked_serials,
)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("oncology", days=365)


@pytest.fixture(scope="module")
def other_ca() -> CertificateAuthority:
    return CertificateAuthority.create("oncology", days=365)


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return new_key()


def _verifies(cert: x509.Certificate, ca: CertificateAuthority) -> bool:
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def test_ca_certificate_signs_certificates_and_crls_only(ca):
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert isinstance(ca.cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(ca.cert.public_key().curve, ec.SECP256R1)
    assert ca.cert.signature_hash_algorithm is not None
    assert ca.cert.signature_hash_algorithm.name == "sha256"
    span = ca.cert.not_valid_after_utc - ca.cert.not_valid_before_utc
    assert dt.timedelta(days=365) <= span <= dt.timedelta(days=365, minutes=10)


def test_server_certificate_is_serverauth_only_with_every_host_as_san(ca, key):
    hosts = ["coordinator.localhost", "127.0.0.1", "::1"]
    cert = issue_server_cert(ca, key.public_key(), hosts=hosts, days=30)
    assert _verifies(cert, ca)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign and not ku.crl_sign
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["coordinator.localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    span = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=30) <= span <= dt.timedelta(days=30, minutes=10)
    assert cert.not_valid_before_utc <= dt.datetime.now(dt.UTC)


def test_site_certificate_is_clientauth_only_with_the_site_as_cn(ca, key):
    cert = issue_site_cert(ca, key.public_key(), site="site-a", days=30)
    assert _verifies(cert, ca)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["site-a"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SITE_URI_PREFIX + "site-a"]


def test_serials_are_random_and_distinct(ca, key):
    serials = {
        issue_site_cert(ca, key.public_key(), site="s", days=1).serial_number for _ in range(8)
    }
    assert len(serials) == 8 and all(s.bit_length() > 64 for s in serials)


def test_a_leaf_never_outlives_its_ca(key):
    short = CertificateAuthority.create("f", days=2)
    cert = issue_site_cert(short, key.public_key(), site="s", days=30)
    assert cert.not_valid_after_utc <= short.cert.not_valid_after_utc


def test_a_certificate_of_another_ca_does_not_verify(ca, other_ca, key):
    cert = issue_site_cert(other_ca, key.public_key(), site="site-a", days=30)
    assert not _verifies(cert, ca)


def test_request_signing_takes_only_the_key_and_checks_the_name(key):
    csr = make_request(key, "site-a")
    assert check_site_request(csr, "site-a").public_numbers() == key.public_key().public_numbers()
    with pytest.raises(ConfigError, match="site-b"):
        check_site_request(csr, "site-b")  # a request for site-a cannot become site-b
    weak = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(IntegrityError):
        check_site_request(make_request(weak, "site-a"), "site-a")


def test_revoked_serials_land_in_a_crl_only_the_ca_can_sign(ca, other_ca, key, tmp_path: Path):
    cert = issue_site_cert(ca, key.public_key(), site="site-a", days=30)
    crl = build_crl(ca, [(cert.serial_number, dt.datetime.now(dt.UTC))], days=30)
    path = tmp_path / "crl.pem"
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    loaded = load_crl(path, ca.cert)
    assert cert.serial_number in revoked_serials(loaded)
    # a hostile network (or a stale coordinator) substitutes a CRL of another CA: refused
    forged = build_crl(other_ca, [], days=30)
    path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(IntegrityError):
        load_crl(path, ca.cert)


def test_load_cert_names_the_file(tmp_path: Path):
    bad = tmp_path / "tls.cert.pem"
    bad.write_text("not a certificate", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tls\.cert\.pem"):
        load_cert(bad)


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_dns = st.lists(_label, min_size=1, max_size=4).map(".".join)
_ip = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)


@settings(max_examples=25, deadline=None)
@given(hosts=st.lists(st.one_of(_dns, _ip), min_size=1, max_size=5, unique=True))
def test_property_every_host_is_a_san_of_its_type(ca, key, hosts):
    cert = issue_server_cert(ca, key.public_key(), hosts=hosts, days=1)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    names += san.get_values_for_type(x509.DNSName)
    expected = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hosts}
    assert set(names) == expected and len(names) == len(hosts)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
