"""The deployment tables of a federation file: [server], [pki], [he], [model], [mask].

Why apart from :mod:`securefl.config`: these settings matter once parties
run on separate machines (where the server listens, how long certificates
live, which site makes the HE keys, which model every kit starts from). They
follow the same rules: frozen keyword-only dataclasses, validated on
construction, every error naming the key. Torch-free and TenSEAL-free: the
HE preset names are listed here and a test checks they match
``securefl.he.PRESETS``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from securefl.errors import ConfigError, SecureFLError

if TYPE_CHECKING:
    from securefl.secagg import MaskConfig

__all__ = [
    "DEFAULT_HE_PRESET",
    "HE_PRESETS",
    "DataConfig",
    "HEConfig",
    "ModelConfig",
    "PKIConfig",
    "ServerConfig",
    "build_mask",
    "default_mask",
]

#: ``securefl.he.PRESETS`` names and ``DEFAULT_PRESET`` (a test checks they agree).
HE_PRESETS = ("bfv-n4096", "ckks-n4096", "ckks-n8192", "ckks-n8192-4primes")
DEFAULT_HE_PRESET = "bfv-n4096"

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MAX_CERT_DAYS = 825  # the longest TLS leaf lifetime any browser or TLS stack still accepts


def _int_in(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in {low}..{high}, got {value!r}")


def is_ip(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (else it must be a DNS name)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_host(host: object) -> None:
    if not isinstance(host, str) or not host:
        raise ConfigError(f"server.hosts entries must be non-empty strings, got {host!r}")
    if is_ip(host):
        return
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ConfigError(
            f"server.hosts entry {host!r} is neither an IP address nor a DNS name "
            "(letters, digits and '-' between dots; no wildcards)"
        )


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Where the server is reached and listens.

    ``hosts`` are the DNS names and IP addresses sites use to reach it: all go
    into its certificate's subject alternative names, and the first is the
    name sites verify and connect to. ``bind`` is the local address it
    listens on.
    """

    hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
    port: int = 8443
    bind: str = "0.0.0.0"  # noqa: S104 - the server's one port must be reachable by the sites

    def __post_init__(self) -> None:
        if isinstance(self.hosts, list):  # TOML arrays arrive as lists
            object.__setattr__(self, "hosts", tuple(self.hosts))
        if not isinstance(self.hosts, tuple) or not self.hosts:
            raise ConfigError(f"server.hosts must be a non-empty list, got {self.hosts!r}")
        for host in self.hosts:
            _check_host(host)
        if len(set(self.hosts)) != len(self.hosts):
            raise ConfigError("server.hosts lists a host twice")
        _int_in("server.port", self.port, 1, 65535)
        if not isinstance(self.bind, str) or not is_ip(self.bind):
            raise ConfigError(f"server.bind must be an IP address, got {self.bind!r}")

    @property
    def url(self) -> str:
        """``https://HOST:PORT`` with the first host (IPv6 in brackets)."""
        host = self.hosts[0]
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class PKIConfig:
    """Certificate lifetimes in days: each party's TLS certificate and the federation CA."""

    cert_days: int = 397
    ca_days: int = 3650

    def __post_init__(self) -> None:
        _int_in("pki.cert_days", self.cert_days, 1, _MAX_CERT_DAYS)
        _int_in("pki.ca_days", self.ca_days, 1, 36500)
        if self.cert_days > self.ca_days:
            raise ConfigError(
                f"pki.cert_days ({self.cert_days}) must not exceed pki.ca_days ({self.ca_days}): "
                "a certificate cannot outlive the CA that signs it"
            )


@dataclass(frozen=True, kw_only=True)
class HEConfig:
    """``he`` mode: the TenSEAL preset, and the site that makes the secret context.

    ``keymaker`` unset means the first site by name. The coordinator never
    makes the keys, so whoever provisions cannot decrypt.
    """

    preset: str = DEFAULT_HE_PRESET
    keymaker: str | None = None

    def __post_init__(self) -> None:
        if self.preset not in HE_PRESETS:
            raise ConfigError(f"he.preset must be one of {HE_PRESETS}, got {self.preset!r}")
        if self.keymaker is not None and (not isinstance(self.keymaker, str) or not self.keymaker):
            raise ConfigError(f"he.keymaker must be a site name, got {self.keymaker!r}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The initial model every kit starts from.

    By default the model ``simulate`` trains: multinomial logistic regression
    over ``features`` inputs and ``classes`` outputs, initialised from
    ``seed`` (initial weights are public; the seed is not a secret). With
    ``factory = "module:function"`` the function is called with no
    arguments, under the same seed, and returns the ``torch.nn.Module``;
    ``features`` and ``classes`` are then not read (a file may not set both).
    """

    features: int = 30
    classes: int = 2
    seed: int = 0
    factory: str | None = None

    def __post_init__(self) -> None:
        _int_in("model.features", self.features, 1, 10**8)
        _int_in("model.classes", self.classes, 2, 10**6)
        _int_in("model.seed", self.seed, 0, 2**63 - 1)
        if self.factory is not None:
            text = self.factory if isinstance(self.factory, str) else ""
            module, sep, attr = text.partition(":")
            if not sep or not _DOTTED.match(module) or not attr.isidentifier():
                raise ConfigError(f"model.factory must be 'module:function', got {self.factory!r}")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """How every site reads its own records.

    ``schema`` is the path of the federation's declared schema (TOML or
    JSON, see :mod:`securefl.data.schema`), relative to the federation file;
    ``None``: own CSVs get only the record-wise signed-log transform.
    """

    schema: str | None = None

    def __post_init__(self) -> None:
        if self.schema is not None and (not isinstance(self.schema, str) or not self.schema):
            raise ConfigError(f"data.schema must be a path to a schema file, got {self.schema!r}")


def default_mask() -> MaskConfig:
    """The masking settings when a file has no [mask] table (those ``simulate`` uses)."""
    from securefl.secagg import MaskConfig

    return MaskConfig(clip=1.0)


def build_mask(table: Any, source: str) -> MaskConfig:
    """A :class:`MaskConfig` from a [mask] table; errors name the file and ``mask.KEY``."""
    from securefl.secagg import MaskConfig

    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [mask] must be a table")
    known = {f.name for f in fields(MaskConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key 'mask.{unknown[0]}'")
    table = {"clip": 1.0, **table}
    try:
        return MaskConfig(**table)
    except SecureFLError as exc:  # ConfigError, and OverflowRefusedError for a ring too small
        msg = str(exc)
        named = msg.split(" ", 1)[0] in known
        raise ConfigError(f"{source}: {'mask.' if named else '[mask] '}{msg}") from None
    except TypeError as exc:
        raise ConfigError(f"{source}: [mask] {exc}") from None
