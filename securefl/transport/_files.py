"""Reading a party's identity key from its kit (PEM PKCS8, unencrypted, 0600)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from securefl.errors import ConfigError
from securefl.hazmat.sign import SigningKey

__all__ = ["load_signing_key"]


def load_signing_key(path: Path) -> SigningKey:
    """The Ed25519 identity key in ``path``; any other file is refused naming it."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: an identity key must be Ed25519")
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return SigningKey.from_private_bytes(raw)
