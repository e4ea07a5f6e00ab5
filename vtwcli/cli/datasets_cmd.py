"""`vtw datasets`: placeholder until its issue lands (see the project's issues)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("datasets")
    def datasets_command() -> None:
        """Not implemented yet."""
        from vtwcli.errors import UsageError

        raise UsageError("vtw datasets is not implemented yet in this build")
