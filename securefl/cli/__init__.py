"""The ``securefl`` command: thin click commands over the library.

Every command maps library errors to one clear line and an exit code
(:attr:`securefl.errors.SecureFLError.exit_code`), never a traceback.
Subcommands are imported only when run (torch and friends take seconds to
import), so ``securefl --help`` answers at once.
"""

from __future__ import annotations

import importlib

import click

__all__ = ["cli", "main"]

#: name -> (module:attribute, one-line help shown by ``securefl --help``)
_COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": (
        "securefl.cli.simulate:simulate",
        "Simulate hospitals training one model together, in this process.",
    ),
    "audit": (
        "securefl.cli.audit:audit",
        "Verify signed privacy records and recompute every ε claim.",
    ),
    "provision": (
        "securefl.cli.provision:provision",
        "Provision a federation: a CA, certificates, keys and one kit per party.",
    ),
    "server": (
        "securefl.cli.server:server",
        "Run the federation's server from its kit (mutual TLS, no torch).",
    ),
    "client": (
        "securefl.cli.client:client",
        "Take part in a federation as a site, from its kit.",
    ),
    "status": (
        "securefl.cli.status:status",
        "Show a running server's status (round, stage, sites, ε).",
    ),
    "plan": (
        "securefl.cli.plan:plan",
        "Dry-run a federation file (ε per site and round, threats), or one ε question.",
    ),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module, _, attr = _COMMANDS[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="securefl")
def cli() -> None:
    """Federated learning for hospitals: DP-SGD at every site, secure aggregation,
    auditable privacy budgets."""


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="securefl")
