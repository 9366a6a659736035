"""Removal entries for the claim rows of ``threat_models/transport.md``."""

from __future__ import annotations

from ._common import (
    _HTTPS,
    _TLS,
    Removal,
    Row,
    _off,
)

ROWS: tuple[Row, ...] = (
    Row(
        "transport-sender-twice",
        "transport.md",
        "An envelope's sender is authenticated twice",
        (
            _off("securefl/transport/https_server.py", "header.sender != site"),
            Removal(
                "securefl/transport/signed.py",
                "    verify(key, envelope_message(envelope, frame.id, known), frame.signature)\n",
                "",
            ),
        ),
    ),
    Row(
        "transport-pinned-server-key",
        "transport.md",
        "A site takes messages only from its federation's server",
        (
            Removal(
                "securefl/transport/signed.py",
                "    verify(key, envelope_message(envelope, frame.id, known), frame.signature)\n",
                "",
            ),
        ),
    ),
    Row(
        "transport-body-limit",
        "transport.md",
        "A body over the limit is refused with 413 before it is read",
        (
            _off(_HTTPS, "size > self.max_body"),
            _off(_HTTPS, "len(body) + len(chunk) > self.max_body"),
        ),
    ),
    Row(
        "transport-replay",
        "transport.md",
        "Replays have no effect",
        (
            Removal(
                _HTTPS,
                'raise _Refusal(409, "envelope id already used with other bytes (replay)")',
                "return 200",
            ),
        ),
    ),
    Row(
        "transport-status-access",
        "transport.md",
        "The status page and JSON are only for roster certificates",
        (  # anyone may see the status
            Removal(
                _HTTPS,
                '        auth = request.headers.get("authorization", "")\n',
                '        return True\n        auth = request.headers.get("authorization", "")\n',
            ),
        ),
    ),
    Row(
        "transport-peer-checks",
        "transport.md",
        "What OpenSSL does not check, the server does on every request",
        (  # each check of the peer certificate in turn; the name and the pin go together
            _off(_TLS, "basic is None or basic.ca"),
            _off(_TLS, "eku is None or ExtendedKeyUsageOID.CLIENT_AUTH not in eku"),
            _off(_TLS, "not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc"),
            _off(_TLS, "fingerprint(der) != self._sites[name]"),
            (
                _off(_TLS, "name not in self._sites"),
                _off(_TLS, "fingerprint(der) != self._sites[name]"),
            ),
        ),
    ),
    Row(
        "transport-revocation",
        "transport.md",
        "Revocation takes effect on the next request",
        (_off(_TLS, "cert.serial_number in self._revoked_serials()"),),
    ),
)
