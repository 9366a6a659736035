"""``securefl provision``: kits for every party, site requests, revocation, renewal.

Thin on purpose: the logic lives in :mod:`securefl.provision`.
``securefl provision FED.toml --out DIR`` is the default command of the group;
``request``, ``revoke`` and ``renew`` are its subcommands.
"""

from __future__ import annotations

from pathlib import Path

import click

from securefl.cli._errors import exit_on_error

__all__ = ["provision"]


class _DefaultGroup(click.Group):
    """A group whose first argument, if not a subcommand, is the federation file."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["kits", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultGroup)
def provision() -> None:
    """Provision a federation: one kit per party, from a federation file.

    \b
      securefl provision FED.toml --out DIR             kits for every party
      securefl provision FED.toml --request S.req --out DIR
                                                        sign a site's own keys in
      securefl provision request --site NAME --out DIR  (at the site) keys + request
      securefl provision revoke FED.toml SITE --out DIR revoke a site's certificate
      securefl provision renew FED.toml --out DIR       fresh certificates
    """


@provision.command("kits", hidden=True)
@click.argument("fed_toml", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option(
    "--request",
    "requests",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A site's request file (repeatable): that site keeps its private keys.",
)
@click.option("--force", is_flag=True, help="Replace an existing CA and every kit in --out.")
@exit_on_error
def kits(fed_toml: Path, out: Path, requests: tuple[Path, ...], force: bool) -> None:
    """Write one kit per party (or sign site requests into an existing federation)."""
    from securefl.provision import SiteRequest
    from securefl.provision import provision as run

    loaded = [SiteRequest.load(p) for p in requests]
    result = run(fed_toml, out, requests=loaded, force=force)
    for party, folder in result.kits.items():
        click.echo(f"{party}: {folder}")
    click.echo(f"coordinator's CA folder (keep private, never in a kit): {out / 'ca'}")


@provision.command("request")
@click.option("--site", required=True, help="This site's name, as in the federation file.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Key folder.")
@click.option("--force", is_flag=True, help="Replace keys already in --out.")
@exit_on_error
def request(site: str, out: Path, force: bool) -> None:
    """At a site: make its private keys and a request for the coordinator."""
    from securefl.provision import make_site_request

    path = make_site_request(site, out, force=force)
    click.echo(f"private keys (stay here): {out}")
    click.echo(f"send to the coordinator: {path}")


@provision.command("revoke")
@click.argument("fed_toml", type=click.Path(path_type=Path))
@click.argument("site")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Provisioned folder.")
@exit_on_error
def revoke(fed_toml: Path, site: str, out: Path) -> None:
    """Revoke a site's certificates: ca/crl.pem and server/crl.pem are rewritten."""
    from securefl.provision import revoke as run

    serials = run(fed_toml, site, out)
    click.echo(f"revoked {site}: serial(s) {', '.join(f'{s:x}' for s in serials)}")
    click.echo(f"copy {out / 'ca' / 'crl.pem'} to the server's kit if it runs elsewhere")


@provision.command("renew")
@click.argument("fed_toml", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Provisioned folder.")
@click.option("--party", "parties", multiple=True, help="Renew only this party (repeatable).")
@exit_on_error
def renew(fed_toml: Path, out: Path, parties: tuple[str, ...]) -> None:
    """Issue fresh certificates and a new signed roster for every kit."""
    from securefl.provision import renew as run

    result = run(fed_toml, out, parties=parties)
    for party, folder in result.kits.items():
        click.echo(f"renewed {party}: {folder / 'tls.cert.pem'}")
    click.echo("every kit has a new roster.json: give each party its new files")
