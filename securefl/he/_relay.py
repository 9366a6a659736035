"""The pre-round key step of ``he`` mode, sans-IO: keymaker -> server -> each site.

Why a step before round 1: the server's he half is built from the keymaker's
signed public context, and no site can encrypt before it holds the secret
context; neither exists until the keymaker site first makes contact. So:

1. the keymaker site (``[he] keymaker`` in the federation file, by default
   the first site by name) makes the keys when it first says hello and sends
   :data:`KEYS_STAGE`: its signed public context and one sealed bundle per
   other roster site (:mod:`securefl.he._delivery`);
2. the server (:class:`KeyRelay`) checks the public context's signature
   against the roster with the keymaker pinned, checks that there is exactly
   one bundle per other roster site addressed to it under that context,
   keeps both, and hands each site that says hello its own bundle
   (:data:`BUNDLE_STAGE`); the round driver opens round 1 only once the keys
   are in (``ready``);
3. each site (:class:`SiteKeys`) opens its bundle with its X25519 exchange key
   and checks everything against its own pinned roster and keymaker.

The server relays but cannot open a bundle, and cannot substitute a public
context (it cannot sign as the keymaker). Like every state machine here: no
sockets, threads or clocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from securefl.errors import ConfigError, IntegrityError, ProtocolError, WireError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.he._context import SecretContext
from securefl.he._delivery import (
    KeyMaterial,
    bundle_header,
    check_public_context,
    make_key_material,
    open_bundle,
    public_context_hash,
)
from securefl.he._keymaker_store import load_or_make
from securefl.he._presets import DEFAULT_PRESET, HEPreset
from securefl.wire import SERVER, Envelope, pack, unpack

__all__ = ["BUNDLE_STAGE", "KEYS_STAGE", "KeyRelay", "SiteKeys"]

#: keymaker -> server: the signed public context and every other site's sealed bundle
KEYS_STAGE = "he/keys"
#: server -> one site: the signed public context and that site's sealed bundle
BUNDLE_STAGE = "he/key-bundle"


def _sites(identity_keys: Mapping[str, bytes]) -> dict[str, bytes]:
    return {name: key for name, key in identity_keys.items() if name != SERVER}


class KeyRelay:
    """The server's part: holds the public context and the sealed bundles, nothing secret."""

    stages = frozenset({KEYS_STAGE})

    def __init__(
        self, *, federation: str, identity_keys: Mapping[str, bytes], keymaker: str
    ) -> None:
        self.federation = federation
        self._roster = _sites(identity_keys)
        if keymaker not in self._roster:
            raise ConfigError(f"he.keymaker = {keymaker!r} is not a site on the roster")
        self.keymaker = keymaker
        self._material: KeyMaterial | None = None
        self._raw = b""
        self._waiting: set[str] = set()

    @property
    def ready(self) -> bool:
        """Whether the keymaker's keys arrived (round 1 may open)."""
        return self._material is not None

    @property
    def signed_public_context(self) -> bytes:
        """The keymaker-signed public context (the he server half is built from it)."""
        if self._material is None:
            raise ProtocolError("the keymaker's HE keys have not arrived yet")
        return self._material.signed_public_context

    def handle(self, env: Envelope) -> list[Envelope]:
        """Take the keymaker's :data:`KEYS_STAGE` message; deliver bundles to who waits."""
        if env.stage != KEYS_STAGE:
            raise ProtocolError(f"the key relay does not handle {env.stage!r}")
        if env.sender != self.keymaker:
            raise ProtocolError(
                f"{env.sender!r} sent HE keys, but the federation's keymaker is {self.keymaker!r}"
            )
        if self._material is not None:
            if env.payload == self._raw:
                return []  # a retry of what we hold
            raise ProtocolError("the keymaker sent other HE keys; the first set stands")
        material = self._check(env.payload)
        self._material, self._raw = material, env.payload
        waiting, self._waiting = sorted(self._waiting), set()
        return [env for site in waiting for env in self._deliver(site)]

    def on_hello(self, site: str) -> list[Envelope]:
        """A roster site said hello: hand it its bundle now, or once the keys arrive."""
        if site not in self._roster or site == self.keymaker:
            return []
        if self._material is None:
            self._waiting.add(site)
            return []
        return self._deliver(site)

    def _check(self, payload: bytes) -> KeyMaterial:
        material = KeyMaterial.from_bytes(payload)
        try:
            check_public_context(
                material.signed_public_context,
                identity_keys=self._roster,
                federation=self.federation,
                maker=self.keymaker,
            )
        except (IntegrityError, WireError) as exc:
            raise ProtocolError(f"the keymaker's public HE context is refused: {exc}") from None
        expected = set(self._roster) - {self.keymaker}
        if set(material.bundles) != expected:
            raise ProtocolError(
                "the keymaker's HE keys must hold one bundle for each other roster site "
                f"({', '.join(sorted(expected))})"
            )
        public_sha = public_context_hash(material.signed_public_context)
        for site, bundle in material.bundles.items():
            header = bundle_header(bundle)
            if header != (self.federation, self.keymaker, site, public_sha):
                raise ProtocolError(f"the keymaker's bundle for {site!r} is addressed otherwise")
        return material

    def _deliver(self, site: str) -> list[Envelope]:
        assert self._material is not None
        payload = pack(
            {
                "public": self._material.signed_public_context,
                "bundle": self._material.bundles[site],
            }
        )
        return [
            Envelope(
                federation=self.federation,
                round=0,
                stage=BUNDLE_STAGE,
                sender=SERVER,
                receiver=site,
                payload=payload,
            )
        ]


class SiteKeys:
    """One site's part: the keymaker makes and sends the keys, every other site opens its bundle.

    Everything it checks against is the site's own: its name, exchange key,
    identity key, the pinned roster's identity and exchange keys, and the
    keymaker its federation file names.
    """

    stages = frozenset({BUNDLE_STAGE})

    def __init__(
        self,
        *,
        name: str,
        federation: str,
        keymaker: str,
        identity_keys: Mapping[str, bytes],
        exchange_keys: Mapping[str, bytes],
        signing_key: SigningKey,
        exchange_key: KeyPair,
        preset: HEPreset = DEFAULT_PRESET,
        state_path: Path | None = None,
    ) -> None:
        self.name = name
        #: where the keymaker keeps its keys across restarts (None: in memory only)
        self.state_path = state_path
        self.federation = federation
        self.keymaker = keymaker
        self._roster = _sites(identity_keys)
        if keymaker not in self._roster:
            raise ConfigError(f"he.keymaker = {keymaker!r} is not a site on the roster")
        if self._roster.get(name) != signing_key.public_bytes():
            raise ConfigError(f"the roster's identity key of {name!r} does not match its key")
        if dict(exchange_keys).get(name) != exchange_key.public_bytes():
            raise ConfigError(f"the roster's exchange key of {name!r} does not match its key")
        self._exchange_keys = {n: k for n, k in exchange_keys.items() if n in self._roster}
        self._signing_key = signing_key
        self._exchange_key = exchange_key
        self._preset = preset
        self._made: SecretContext | None = None
        self._material = b""

    @property
    def is_keymaker(self) -> bool:
        return self.name == self.keymaker

    def hello(self) -> tuple[list[Envelope], SecretContext | None]:
        """What to send after hello; the keymaker makes the keys (once) and has its context."""
        if not self.is_keymaker:
            return [], None
        if self._made is None:
            if self.state_path is None:
                self._made, self._material = self._make()
            else:  # made once for the life of the state folder, saved before they leave
                self._made, self._material = load_or_make(self.state_path, self._make)
        env = Envelope(
            federation=self.federation,
            round=0,
            stage=KEYS_STAGE,
            sender=self.name,
            receiver=SERVER,
            payload=self._material,
        )
        return [env], self._made

    def _make(self) -> tuple[SecretContext, bytes]:
        made = SecretContext.generate(self._preset)
        material = make_key_material(
            made,
            federation=self.federation,
            maker=self.name,
            signing_key=self._signing_key,
            exchange_keys=self._exchange_keys,
        ).to_bytes()
        return made, material

    def handle(self, env: Envelope) -> SecretContext:
        """Open the server's :data:`BUNDLE_STAGE` message into the federation's secret context."""
        if env.stage != BUNDLE_STAGE or env.sender != SERVER or env.receiver != self.name:
            raise ProtocolError(f"{self.name}: not a key bundle for this site")
        if self.is_keymaker:
            raise ProtocolError(f"{self.name} is the keymaker; it takes no key bundle")
        obj = unpack(env.payload)
        if not isinstance(obj, dict) or set(obj) != {"public", "bundle"}:
            raise WireError("not a securefl HE key bundle message")
        public, bundle = obj["public"], obj["bundle"]
        if not isinstance(public, bytes) or not isinstance(bundle, bytes):
            raise WireError("HE key bundle message fields have the wrong types")
        return open_bundle(
            bundle,
            recipient=self.name,
            exchange_key=self._exchange_key,
            federation=self.federation,
            keymaker=self.keymaker,
            identity_keys=self._roster,
            signed_public_context=public,
        )
