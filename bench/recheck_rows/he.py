"""Removal entries for the claim rows of ``threat_models/he.md``."""

from __future__ import annotations

from ._common import (
    _ENC,
    _HE_CTX,
    _HE_DEC,
    _HE_FRAME,
    _HE_SRV,
    Removal,
    Row,
    _off,
)

_TRUST = "securefl/he/_trust.py"
_RELAY = "securefl/he/_relay.py"
_DELIVERY = "securefl/he/_delivery.py"

ROWS: tuple[Row, ...] = (
    Row(
        "he-upload-signature",
        "he.md",
        "Each upload is signed by its sender",
        (
            Removal(
                _HE_SRV,
                "        verify(roster_key(self._roster, envelope.sender), message, signature)\n",
                "",
            ),
        ),
    ),
    Row(
        "he-header-checks",
        "he.md",
        "The aggregate carries each summand's signed header",
        (
            _off(_HE_DEC, "len(set(sites)) != len(sites)"),
            Removal(
                _HE_DEC,
                "        u.verify(\n            roster=roster,",
                "        (lambda **_: None)(\n            roster=roster,",
            ),
        ),
    ),
    Row(
        "he-feasible-sum",
        "he.md",
        "A sum the server changed so that it lies beyond",
        (
            _off(_HE_DEC, "not finite or peak > bound"),
            _off(_HE_DEC, "top > n * levels"),
        ),
    ),
    Row(
        "he-min-summands",
        "he.md",
        "No sum of fewer than `max(min_sites, 3)` uploads",
        (
            _off(_HE_SRV, "len(survivors) < self._needed"),
            _off(_HE_DEC, "len(sites) < needed"),
        ),
    ),
    Row(
        "he-own-upload",
        "he.md",
        "A site refuses a sum of a round it took part in",
        (
            _off(_HE_DEC, "not any(u.site == site and u.digest == own.digest for u in uploads)"),
            _off(_HE_DEC, "not set(sites) <= set(own.cohort)"),
        ),
    ),
    Row(
        "he-round-digest",
        "he.md",
        "Every upload in a sum must carry the same signed round-start digest",
        (_off(_HE_DEC, "len(digests) != 1"),),
    ),
    Row(
        "he-max-weight",
        "he.md",
        "`max_weight` is the site's own",
        (_off(_HE_DEC, "scale != max_weight"),),
    ),
    Row(
        "he-own-strategy",
        "he.md",
        "The strategy a site applies to the encrypted model is its own",
        (
            _off(_ENC, "strategy != self._own_strategy"),
            _off(_ENC, 'obj["strategy"] != self._own_strategy'),
        ),
    ),
    Row(
        "he-infeasible-aggregate",
        "he.md",
        "Sites refuse an aggregate that honest clipped inputs cannot produce",
        (
            _off(_HE_DEC, "not finite or peak > bound"),
            _off(_HE_DEC, "u.weight > scale"),
        ),
    ),
    Row(
        "he-history-rewrite",
        "he.md",
        "A site refuses a model history the server rewrote",
        (
            _off(_ENC, "chain != self._chain[i + 1]"),
            _off(_ENC, "start + len(aggregates) < len(self._rounds)"),
            _off(_ENC, "self._rounds and opened.round <= self._rounds[-1]"),
        ),
    ),
    Row(
        "he-history-chain",
        "he.md",
        "Each site is sent only the aggregates it has not acknowledged",
        (
            Removal(
                _ENC,
                "elif self._strategy is None or start > len(self._rounds):",
                "elif self._strategy is None:",
            ),
            _off(_ENC, "chain != self._chain[i + 1]"),
            _off(_ENC, "head != self._chain[0]"),
        ),
    ),
    Row(
        "he-hello-bound",
        "he.md",
        "A roster site repeating `fed/hello`",
        (
            Removal(_ENC, "        last = self._unacked.get(site)\n", "        last = None\n"),
            Removal(_ENC, "        held = claim.aggregates\n", "        held = 0\n"),
            _off(_ENC, "not (held < len(self._heads) and claim.head == self._heads[held])"),
            Removal(
                _ENC,
                "        self._acked[site] = 0  # a second copy",
                "        pass  # a second copy",
            ),
        ),
    ),
    Row(
        "he-fork",
        "he.md",
        "A server that hands two sites different histories",
        (
            Removal(
                "securefl/runtime/_site_round.py",
                'history = getattr(decoder, "history_digest", None)',
                "history = None",
            ),
        ),
    ),
    Row(
        "he-theta0-float32",
        "he.md",
        "Equal chain heads mean equal models",
        (  # two layers, each enough for the property: removed together
            (
                _off(_ENC, 'theta0.dtype != np.dtype("<f4")'),
                Removal(
                    _ENC,
                    'canonical = np.asarray(theta0, dtype="<f4").tobytes()',
                    "canonical = np.asarray(theta0).tobytes()",
                ),
            ),
        ),
    ),
    Row(
        "he-cohort-wrap",
        "he.md",
        "Sums cannot wrap",
        (
            _off("securefl/he/_site.py", "len(ctx.cohort) > max_sites"),
            Removal(_HE_SRV, "        check_cohort(ctx, public.preset.max_sites)\n", ""),
        ),
    ),
    Row(
        "he-server-refuses-secret-context",
        "he.md",
        "The server refuses a context holding a secret key",
        (
            _off(
                "securefl/he/_context.py",
                'obj["secret"] is not False or ctx.is_private() or ctx.has_secret_key()',
            ),
        ),
    ),
    Row(
        "he-secret-key-id",
        "he.md",
        "Parameters are validated on load even when the signature holds",
        (_off("securefl/he/_context.py", '_key_id(_secret_bytes(ctx)) != obj["key_id"]'),),
    ),
    Row(
        "he-export-flag",
        "he.md",
        "Secret-holding objects refuse pickling",
        (
            _off("securefl/he/_context.py", "include_secret_key is not True"),
            (  # both hooks that refuse pickling
                Removal(
                    "securefl/he/_context.py",
                    "    def __reduce__(self) -> NoReturn:",
                    "    def _no_reduce(self) -> NoReturn:",
                ),
                Removal(
                    "securefl/he/_context.py",
                    "    def __getstate__(self) -> NoReturn:",
                    "    def _no_getstate(self) -> NoReturn:",
                ),
            ),
        ),
    ),
    Row(
        "he-context-signature",
        "he.md",
        "Contexts are signed by the site that made them",
        (
            Removal(
                "securefl/he/_trust.py",
                "    verify(roster_key(roster, signer), signed_message(_KINDS[kind], federation, "
                "signer, inner), sig)",
                "    roster_key(roster, signer)",
            ),
        ),
    ),
    Row(
        "he-designated-maker",
        "he.md",
        "A context made by another roster site than the designated maker",
        (_off("securefl/he/_trust.py", "maker is not None and signer != maker"),),
    ),
    Row(
        "he-public-context-secret",
        "he.md",
        "The server's context holds no secret key",
        (_off(_HE_CTX, 'obj["secret"] is not False or ctx.is_private() or ctx.has_secret_key()'),),
    ),
    Row(
        "he-preset-bound",
        "he.md",
        "Every preset is within SEAL's 128-bit bound",
        (_off("securefl/he/_presets.py", "sum(self.coeff_mod_bit_sizes) > bound"),),
    ),
    Row(
        "he-allocation-bound",
        "he.md",
        "One signed upload cannot make the server allocate far beyond its size",
        (  # the count of ciphertexts in a chunk; then also the size bound of the one left
            _off(_HE_FRAME, "len(cts) != 1 or cts[0][1] != 2"),
            (
                _off(_HE_FRAME, "len(cts) != 1 or cts[0][1] != 2"),
                Removal(
                    _HE_FRAME,
                    "        _seal_bound(cts[0][2], max_ciphertext_bytes(preset))\n",
                    "        pass\n",
                ),
            ),
        ),
    ),
    Row(
        "he-bundles-whole",
        "he.md",
        "No he round opens before the keymaker's keys arrive",
        (_off("securefl/he/_relay.py", "set(material.bundles) != expected"),),
    ),
    Row(
        "he-other-context",
        "he.md",
        "A server that swaps the context for one it made",
        (
            Removal(  # the maker's signature on the context is not checked
                _TRUST,
                "    verify(roster_key(roster, signer), signed_message(_KINDS[kind], federation, "
                "signer, inner), sig)",
                "    roster_key(roster, signer)",
            ),
            (  # the federation is taken from the context instead of the party's own
                _off(_TRUST, 'obj["federation"] != federation'),
                Removal(
                    _TRUST,
                    "signed_message(_KINDS[kind], federation, signer, inner), sig)",
                    'signed_message(_KINDS[kind], obj["federation"], signer, inner), sig)',
                ),
            ),
        ),
    ),
    Row(
        "he-mode-halves",
        "he.md",
        "A server-side mode cannot encrypt or decrypt",
        (_off("securefl/he/_site.py", "site_id != self.site_id"),),
    ),
    Row(
        "he-malformed-drops-sender",
        "he.md",
        "One site cannot stop the server",
        (
            Removal(  # a library error on one upload is no longer that upload's fault
                _HE_SRV,
                "except Exception as exc:  # a native library",
                "except ZeroDivisionError as exc:  # a native library",
            ),
            Removal(  # a refused upload stops the round instead of dropping its sender
                _HE_SRV,
                "        except SecureFLError as exc:\n            self._reject(sender, exc)\n",
                "        except ZeroDivisionError as exc:\n            self._reject(sender, exc)\n",
            ),
            Removal(  # the driver lets any peer's error through
                "securefl/runtime/server.py",
                "            if peer is None:\n                raise\n",
                "            raise\n",
            ),
        ),
    ),
    Row(
        "he-sealed-to-sites",
        "he.md",
        "The coordinator never holds an HE secret key",
        (  # the signed secret context travels in the clear beside its box
            Removal(
                _DELIVERY,
                "    box = _aead_seal(\n",
                "    box = signed_secret_context + _aead_seal(\n",
            ),
        ),
    ),
    Row(
        "he-sealing-vectors",
        "he.md",
        "The sealing has known answers",
        (  # the ephemeral key left out of the associated data
            Removal(
                _DELIVERY,
                "BUNDLE_AD_DOMAIN, federation, maker, recipient, public_sha, eph)",
                "BUNDLE_AD_DOMAIN, federation, maker, recipient, public_sha)",
            ),
        ),
    ),
    Row(
        "he-bundle-public-context",
        "he.md",
        "A server that announces a public context of its own",
        (  # two layers removed together: the bundle's public-context hash, the same-key check
            (
                Removal(
                    _DELIVERY,
                    "    obj = _parse_bundle(data)\n    public_sha = public_context_hash("
                    "signed_public_context)\n",
                    '    obj = _parse_bundle(data)\n    public_sha = obj["public_sha256"]\n',
                ),
                _off(
                    _DELIVERY,
                    "(secret.key_id, secret.preset.name, secret.clip) != (\n"
                    "        public.key_id,\n        public.preset.name,\n        public.clip,\n"
                    "    )",
                ),
            ),
        ),
    ),
    Row(
        "he-keymaker-only",
        "he.md",
        "Only the keymaker the federation names can make the keys",
        (  # every party takes the maker from what it is sent, not from its own configuration
            (
                _off(_TRUST, "maker is not None and signer != maker"),
                _off(_RELAY, "env.sender != self.keymaker"),
                Removal(
                    _RELAY,
                    "if header != (self.federation, self.keymaker, site, public_sha):",
                    "if header != (self.federation, header[1], site, public_sha):",
                ),
                Removal(
                    _DELIVERY,
                    "    obj = _parse_bundle(data)\n    public_sha",
                    '    obj = _parse_bundle(data)\n    keymaker = obj["maker"]\n    public_sha',
                ),
            ),
        ),
    ),
    Row(
        "he-cheating-site-bound",
        "he.md",
        "One cheating site (it holds the key and signs what it likes)",
        (
            _off(_HE_DEC, "not finite or peak > bound"),
            _off(_HE_DEC, "top > n * levels"),
        ),
    ),
    Row(
        "he-dropout",
        "he.md",
        "A site that drops out is not summed",
        (  # a departed site is still waited for
            Removal(
                _HE_SRV,
                "            self._departed.add(site_id)\n",
                "            pass\n",
            ),
        ),
    ),
    Row(
        "he-deterministic-strategy",
        "he.md",
        "Every deterministic strategy, FedAdam included, is accepted",
        (_off(_ENC, "not make_strategy(strategy).deterministic"),),
    ),
    Row(
        "he-only-the-sum",
        "he.md",
        "An honest server gives a site only the sum",
        (  # the server adds nothing: the first upload's ciphertexts go out as the sum
            Removal(
                "securefl/he/_codec.py",
                "                    acc.add_(vec)\n",
                "                    pass\n",
            ),
        ),
    ),
    Row(
        "he-mean",
        "he.md",
        "The decrypted mean matches the plaintext weighted mean",
        (  # the sum left in units of max_weight (the weight scale not undone)
            Removal(_HE_DEC, "weighted_sum=normalized * scale,", "weighted_sum=normalized,"),
        ),
    ),
    Row(
        "he-rekey",
        "he.md",
        "A server that re-sends a site its key bundle mid-run",
        (
            Removal(  # every bundle builds a new half, with an empty history
                "securefl/modes.py",
                "        if self._half is None:\n            self._half, self._key_id",
                "        if True:\n            self._half, self._key_id",
            ),
            _off("securefl/modes.py", "secret.key_id != self._key_id"),
        ),
    ),
)
