"""A hospital's :class:`~securefl.runtime.site.Site` built from its kit.

Why from the kit alone: a site holds only its own keys and the signed roster
it pinned at provisioning. The transport verifies the server's certificate
against the federation CA and the name in the kit, and opens every message
against the server's identity key from that roster; the mode's half (mask
masks, or the he key step) gets its peers' keys from the same roster (with
each site's BLS key and proof for the neighbourhood round), so a cheating
coordinator cannot add sites of its own. The ledger, the round log
and the signed records live in the kit's state folder, with the auditor's
roster next to the records so ``securefl audit STATE/records`` finds it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from securefl.errors import ConfigError
from securefl.modes import SiteHalf, site_setup
from securefl.provision.kit import Kit
from securefl.reports.roster import SERVER_ENTRY
from securefl.runtime.global_model import decode_plain_model
from securefl.transport.https_client import HttpsSiteTransport, RetryPolicy

if TYPE_CHECKING:
    from securefl.runtime.site import Site
    from securefl.transport.base import Transport

__all__ = ["site_from_kit", "site_transport"]


def site_transport(
    kit: Kit, *, server_url: str | None = None, retry: RetryPolicy | None = None
) -> HttpsSiteTransport:
    """The site's HTTPS endpoint: its client certificate, the CA, the pinned server key."""
    url = server_url or kit.server_url
    if not url:
        raise ConfigError(f"kit {kit.path}: kit.json names no server_url; pass the server's URL")
    return HttpsSiteTransport(
        name=kit.party,
        server_url=url,
        server_name=kit.server_name,
        ca=kit.ca_cert_path,
        cert=kit.cert_path,
        key=kit.key_path,
        signing_key=kit.signing_key(),
        server_key=kit.roster.identity_keys()[SERVER_ENTRY],
        # the roster pins the server's certificate: another CA-issued one for its name is refused
        server_cert_sha256=kit.roster.cert_sha256(SERVER_ENTRY),
        retry=retry or RetryPolicy(),
    )


def site_from_kit(
    path: str | Path,
    *,
    server_url: str | None = None,
    state_dir: str | Path | None = None,
    retry: RetryPolicy | None = None,
    transport: Transport | None = None,
) -> Site:
    """The site whose kit is at ``path``, ready for ``site.privatize`` and ``site.rounds``.

    Overrides: ``server_url`` (another address than the kit's, e.g. a port
    picked at start), ``state_dir`` (default ``KIT/state``), ``retry`` (how
    long to keep trying an unreachable server, per request and again when the
    site reconnects after a transport error) and ``transport`` (any other
    :class:`Transport`, for tests; the kit's HTTPS endpoint otherwise).
    """
    from securefl.runtime.site import Site

    kit = Kit.load(path, kind="site")
    cfg = kit.federation
    bls_roster = kit.bls_roster()  # refuses an old roster for the neighbourhood round, first
    state = Path(state_dir) if state_dir is not None else kit.state_dir
    # the ledger is plain SQLite: whoever may write the folder may reset the spent ε
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_own_folder(state)
    (state / "records").mkdir(mode=0o700, exist_ok=True)
    # the auditor's roster next to the records: `securefl audit STATE/records` finds it
    kit.roster.audit_roster().save(state / "roster.json")
    identity = kit.roster.identity_keys()
    signing = kit.signing_key()
    if cfg.privacy == "distributed":
        return _distributed_site(
            kit, state, transport or site_transport(kit, server_url=server_url, retry=retry), retry
        )
    preset = None
    if cfg.secure == "he":
        from securefl.he._presets import preset_by_name

        preset = preset_by_name(cfg.he.preset)
    he = cfg.secure == "he"
    half, keys = site_setup(
        cfg.secure,
        name=kit.party,
        signing_key=signing,
        identity_keys=identity,
        state_dir=state,
        federation=cfg.name,
        strategy=cfg.strategy,
        max_weight=kit.max_weight,
        min_sites=cfg.rounds.min_sites,
        mask=cfg.mask,
        exchange_key=kit.exchange_key() if he else None,
        exchange_keys=kit.roster.exchange_keys() if he else None,
        he_keymaker=cfg.he.keymaker,
        he_preset=preset,
        bls_roster=bls_roster,  # the neighbourhood round's, checked when the kit loaded
    )
    return Site.for_federation(
        name=kit.party,
        config=cfg,
        identity_keys=identity,
        signing_key=signing,
        state_dir=state,
        transport=transport or site_transport(kit, server_url=server_url, retry=retry),
        half=half,
        keys=keys,
        reconnect=retry,
    )


def _distributed_site(
    kit: Kit, state: Path, transport: Transport, retry: RetryPolicy | None
) -> Site:
    """A site of a ``privacy = "distributed"`` federation: integer SecAgg+ and its own plan.

    The plan (sample rate q, expected batch size q × records, scale γ, the
    central noise μ, the ring, threshold t and colluders c) is derived from
    this kit's federation file, model and roster alone, never from the
    server: the site sizes its noise share from its own t and c and refuses
    a round whose announced numbers differ (``check_announced``).
    """
    from securefl.runtime._distributed import DistributedPlan, distributed_site_mode
    from securefl.runtime.site import Site

    cfg = kit.federation
    identity = kit.roster.identity_keys()
    signing = kit.signing_key()
    plan = DistributedPlan.from_config(
        cfg, dimension=kit.spec.size, federation_size=len(kit.roster.site_names)
    )
    mode = distributed_site_mode(
        plan,
        name=kit.party,
        signing_key=signing,
        identity_keys=identity,
        state_dir=state,
        bls_roster=kit.bls_roster(),
    )
    return Site.for_federation(
        name=kit.party,
        config=cfg,
        identity_keys=identity,
        signing_key=signing,
        state_dir=state,
        transport=transport,
        half=SiteHalf(mode, decode_plain_model),
        reconnect=retry,
        distributed=plan,
    )


def _check_own_folder(state: Path) -> None:
    """Refuse a state folder another user owns or may write (it holds the privacy ledger)."""
    if os.name != "posix":
        return
    info = state.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(f"state folder {state}: owned by another user; use a folder of your own")
    if stat.S_IMODE(info.st_mode) & 0o002:
        raise ConfigError(
            f"state folder {state}: writable by other users, who could reset the privacy "
            f"ledger; run: chmod o-w {state}"
        )
