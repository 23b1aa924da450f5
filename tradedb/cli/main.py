"""The ``tradedb`` console script: every verb group registered on one click group, and one clear line per error.

The verbs are thin, like Alembic's command layer: each resolves the environment, calls one function of the layers
below and renders its result. This is the top of the whole project; nothing imports it.
"""

from __future__ import annotations

import sys

import click
from sqlalchemy.exc import OperationalError

from tradedb.cli import backup, data, deploy, monitoring, new, schema, window  # noqa: F401  (registers the verbs)
from tradedb.cli.base import cli, err_console
from tradedb.core.errors import TradeDBError

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point: one clear line for every error the operator can fix."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TradeDBError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OperationalError as exc:
        click.echo(f"error: database error: {str(exc.orig).splitlines()[0] if exc.orig else exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
