"""The ``securefl`` command: thin click commands over the library.

Every command maps library errors to one clear line and an exit code
(:attr:`securefl.errors.SecureFLError.exit_code`), never a traceback.
"""

from __future__ import annotations

import click

from securefl.cli.simulate import simulate

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="securefl")
def cli() -> None:
    """Federated learning for hospitals: DP-SGD at every site, secure aggregation,
    auditable privacy budgets."""


cli.add_command(simulate)

try:  # commands whose modules may be absent in a partial install
    from securefl.cli.audit import audit
    from securefl.cli.plan import plan

    cli.add_command(audit)
    cli.add_command(plan)
except ImportError:  # pragma: no cover
    pass


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="securefl")
