"""Removal entries for the claim rows of ``threat_models/transport.md``."""

from __future__ import annotations

from ._common import (
    _HE_SRV,
    _HTTPS,
    _SA_SRV,
    _TLS,
    Removal,
    Row,
    _off,
)

_CLIENT = "securefl/transport/https_client.py"
_OUTBOX = "securefl/transport/_outbox.py"
_SITES = "securefl/transport/_sites.py"
_STATUS = "securefl/transport/_status.py"
_SIGNED = "securefl/transport/signed.py"
_PLAIN = "securefl/aggregation/plain.py"
_DEPLOY_SITE = "securefl/deploy/site.py"
_RUN_FOLDER = "securefl/simulation/run_folder.py"
_SITE_DRIVER = "securefl/runtime/site_driver.py"
_SITE = "securefl/runtime/site.py"
#: the server's signature check of a frame (also the site's check of the server's frames)
_NO_SIGNATURE = Removal(
    _SIGNED, "    verify(key, envelope_message(envelope, frame.id, known), frame.signature)\n", ""
)
#: an id seen before is treated as new: a retry is admitted again
_NO_SEEN_IDS = _off(_HTTPS, "seen is not None")

ROWS: tuple[Row, ...] = (
    Row(
        "transport-anytime-sizes",
        "transport.md",
        "A roster site cannot queue model-sized hellos or goodbyes",
        (_off("securefl/transport/_gate.py", "limit is not None and header.payload_size > limit"),),
    ),
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
    Row(
        "transport-crl-signature",
        "transport.md",
        "A revocation list that does not verify under the CA key",
        (_off(_TLS, "not crl.is_signature_valid(public)"),),
    ),
    Row(
        "transport-stranger",
        "transport.md",
        "A stranger cannot join, stall or shrink a round",
        (  # the roster name with its pin (a name off the roster has none); the roster key
            (
                _off(_TLS, "name not in self._sites"),
                _off(_TLS, "fingerprint(der) != self._sites[name]"),
            ),
            _NO_SIGNATURE,
        ),
    ),
    Row(
        "transport-one-body",
        "transport.md",
        "One roster site cannot pin memory by announcing bodies",
        (_off(_HTTPS, "older is not None and older is not me"),),
    ),
    Row(
        "transport-malformed",
        "transport.md",
        "Malformed frames are refused with 400",
        (  # a decoding error escapes as a server error instead of a refusal
            Removal(
                _HTTPS,
                "            except WireError as exc:\n"
                '                raise _Refusal(400, f"malformed envelope: {exc}") from None\n'
                "            ended: ",
                "            except _Refusal:\n                raise\n            ended: ",
            ),
        ),
    ),
    Row(
        "transport-retry-idempotent",
        "transport.md",
        "Retries are idempotent",
        (
            _off(_HTTPS, "seen == hashed[1]"),  # a retry taken for a replay
            _NO_SEEN_IDS,  # a retry delivered again
        ),
    ),
    Row(
        "transport-retries-counted-once",
        "transport.md",
        "A retried, duplicated, late or reordered message",
        (  # each mode's repeat check, and the transport's id table
            _off(_PLAIN, "self._taken.get(envelope.sender) == digest"),
            _off(_SA_SRV, "self._taken[(envelope.stage, envelope.sender)] == digest"),
            _off(_HE_SRV, "sender in self._uploads or sender in self.rejected"),
            _NO_SEEN_IDS,
        ),
    ),
    Row(
        "transport-changed-repeat",
        "transport.md",
        "A replayed message with changed bytes is never counted",
        (
            Removal(
                _HTTPS,
                'raise _Refusal(409, "envelope id already used with other bytes (replay)")',
                "return 200",
            ),
            _off(_PLAIN, "envelope.sender in self._heard"),
            (  # mask: a second message of a stage taken like the first
                _off(_SA_SRV, "(envelope.stage, sender) in self._taken"),
                _off(_SA_SRV, "sender in self._answered()"),
            ),
            _off(_HE_SRV, "sender in self._uploads or sender in self.rejected"),
        ),
    ),
    Row(
        "transport-id-table",
        "transport.md",
        "A roster site cannot grow the server's table of envelope ids",
        (
            Removal(_SITES, "if entry[0] >= round_number - 1", ""),  # ids never forgotten
            Removal(_SITES, "while len(ids) > self._per_site:", "while False:"),  # no cap
        ),
    ),
    Row(
        "transport-liveness",
        "transport.md",
        "A site that stops polling (killed, cut off) stalls at most",
        (
            Removal(_SITES, "return silent if silent > self.interval else None", "return None"),
            Removal(_SITES, "heard is None or self._waiting.get(site, 0) > 0", "heard is None"),
        ),
    ),
    Row(
        "transport-simulate-keys-private",
        "transport.md",
        "What continuing a simulation needs is not readable by other local users",
        (
            Removal(
                _RUN_FOLDER,
                "    path.mkdir(mode=0o700, parents=True, exist_ok=True)\n"
                "    os.chmod(path, 0o700)",
                "    path.mkdir(parents=True, exist_ok=True)",
            ),
            Removal(
                _RUN_FOLDER,
                "    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)\n"
                '    with os.fdopen(fd, "wb") as handle:\n'
                "        os.fchmod(handle.fileno(), 0o600)\n",
                "    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)\n"
                '    with os.fdopen(fd, "wb") as handle:\n',
            ),
        ),
    ),
    Row(
        "transport-site-checks-server",
        "transport.md",
        "A site talks only to a server whose certificate chains to the",
        (
            Removal(_TLS, "    ctx.check_hostname = True\n", "    ctx.check_hostname = False\n"),
            Removal(
                _TLS,
                "    ctx.check_hostname = True\n    ctx.load_verify_locations(cafile=str(ca))\n",
                "    ctx.check_hostname = False\n    ctx.verify_mode = ssl.CERT_NONE\n",
            ),
        ),
    ),
    Row(
        "transport-site-server-pin",
        "transport.md",
        "A site given the roster's pinned server certificate",
        (_off(_CLIENT, "der is None or fingerprint(der) != self._pin"),),
    ),
    Row(
        "transport-one-poll",
        "transport.md",
        "A site cannot keep many long polls waiting",
        (
            (
                Removal(
                    _HTTPS,
                    "if not messages or self._polls[site] != ticket:",
                    "if not messages:",
                ),
                Removal(
                    _HTTPS,
                    "current=lambda: self._polls[site] == ticket and not self._closed",
                    "current=lambda: not self._closed",
                ),
            ),
        ),
    ),
    Row(
        "transport-outbox-dedup",
        "transport.md",
        "A site cannot make the server hold a copy of a large",
        (_off(_OUTBOX, "key in self._pending"),),
    ),
    Row(
        "transport-status-stage",
        "transport.md",
        "A roster site cannot write what the status page says",
        (  # the stage shown taken from a site's envelope
            Removal(
                _STATUS,
                "            # the stage shown comes from what the server sends",
                "            self._stage = env.stage\n"
                "            # the stage shown comes from what the server sends",
            ),
        ),
    ),
    Row(
        "transport-status-finite",
        "transport.md",
        "A site's report cannot take the status down",
        (_off("securefl/runtime/messages.py", "not math.isfinite(value)"),),
    ),
    Row(
        "transport-driver-roster",
        "transport.md",
        "The round driver takes messages only from the roster's names",
        (
            _off(
                "securefl/runtime/server.py",
                "self.admit is not None and env.sender not in self.admit",
            ),
        ),
    ),
    Row(
        "transport-deployed-server",
        "transport.md",
        "`securefl server` wires the roster from its kit",
        (
            _NO_SIGNATURE,
            _off(_HTTPS, "header.sender != site"),
            Removal(
                "securefl/deploy/server.py",
                "    transport.set_gate(driver_gate(driver, anytime=anytime))\n",
                "",
            ),
        ),
    ),
    Row(
        "transport-site-from-kit",
        "transport.md",
        "A site built from its kit (`Site.from_kit`, `securefl client`) pins",
        (
            _off("securefl/runtime/_policy.py", "strangers"),
            _NO_SIGNATURE,
            Removal(
                _DEPLOY_SITE,
                "server_cert_sha256=kit.roster.cert_sha256(SERVER_ENTRY),",
                "server_cert_sha256=None,",
            ),
        ),
    ),
    Row(
        "transport-train-path",
        "transport.md",
        "`--train MODULE:FUNCTION` cannot be used to run a planted file",
        (Removal("securefl/deploy/client.py", "sys.path.append(cwd)", "sys.path.insert(0, cwd)"),),
    ),
    Row(
        "transport-state-folder",
        "transport.md",
        "A site's state folder (its privacy ledger, plain SQLite) is its own",
        (
            Removal(
                _DEPLOY_SITE,
                "state.mkdir(mode=0o700, parents=True, exist_ok=True)",
                "state.mkdir(parents=True, exist_ok=True)",
            ),
            _off(_DEPLOY_SITE, "stat.S_IMODE(info.st_mode) & 0o002"),
            _off(_DEPLOY_SITE, "info.st_uid != os.getuid()"),
        ),
    ),
    Row(
        "transport-status-command",
        "transport.md",
        "`securefl status` with a site kit believes only the federation's server",
        (
            Removal(
                "securefl/deploy/status.py",
                "_pinned_transport(verify, kit.roster.cert_sha256(SERVER_ENTRY))",
                "_pinned_transport(verify, None)",
            ),
            _off("securefl/deploy/status.py", "len(body) > MAX_STATUS_BYTES"),
        ),
    ),
    Row(
        "transport-client-certificates",
        "transport.md",
        "A client without a certificate, with one from another CA, or with",
        (  # expiry: OpenSSL's time check at the handshake and ours on every request, together
            (
                Removal(
                    _TLS,
                    "    ctx.minimum_version = ssl.TLSVersion.TLSv1_3\n"
                    "    ctx.verify_mode = ssl.CERT_REQUIRED\n"
                    "    ctx.load_verify_locations",
                    "    ctx.minimum_version = ssl.TLSVersion.TLSv1_3\n"
                    "    ctx.verify_mode = ssl.CERT_REQUIRED\n"
                    "    ctx.verify_flags |= 0x200000  # X509_V_FLAG_NO_CHECK_TIME\n"
                    "    ctx.load_verify_locations",
                ),
                _off(_TLS, "not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc"),
            ),
        ),
    ),
    Row(
        "transport-restarted-site",
        "transport.md",
        "A restarted site drops what the server queued for the process that died",
        (
            _off(_SITE_DRIVER, "env.sender != SERVER or env.receiver != self.name"),
            _off(_SITE_DRIVER, "env.federation != self.federation"),
            Removal(  # a round start at or below the site's round taken for a straggler
                _SITE_DRIVER,
                "        if env.stage == m.ROUND_START:\n",
                "        if env.stage == m.ROUND_START and env.round > self.round:\n",
            ),
            Removal(  # a round start taken for already taken before any policy check
                _SITE,
                "        run = m.decode(env.payload, m.RoundStart).run\n",
                "        run = m.decode(env.payload, m.RoundStart).run\n"
                "        if any(e.round_id == env.round and e.status == 'committed'\n"
                "               for e in self._account.ledger.history()):\n"
                "            return None\n",
            ),
            Removal(  # already taken whatever the model
                "securefl/runtime/_account.py",
                "e.round_id, e.model_hash)",
                "e.round_id, model_hash)",
            ),
            Removal(  # a message of the site's own round dropped before it submitted
                _SITE_DRIVER,
                "or self._aggregator is None:\n",
                "or self._aggregator is None:\n                return [], None\n",
            ),
        ),
    ),
    Row(
        "transport-own-outbox",
        "transport.md",
        "A site reads and acknowledges only its own outbox",
        (  # the outbox chosen by a request parameter when one is given, not by the TLS name
            Removal(
                _HTTPS,
                "outbox = self._outboxes[site]",
                'outbox = self._outboxes[request.query_params.get("site", site)]',
            ),
        ),
    ),
    Row(
        "transport-mask-site-killed",
        "transport.md",
        "A site SIGKILLed in the middle of a mask round",
        (  # the server leaves a dropped site's pairwise masks in the survivors' sum
            Removal(
                "securefl/secagg/_unmask.py",
                "    for v, sk in s_keys.items():\n",
                "    for v, sk in {}.items():\n",
            ),
        ),
    ),
    Row(
        "transport-he-site-killed",
        "transport.md",
        "A site SIGKILLed in the middle of an he round",
        (_off(_HE_SRV, "not self._closed"),),  # the deadline never closes the round without it
    ),
)
