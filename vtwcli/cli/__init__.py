"""The ``vtw`` command line: parse options, call the library, print.

Each command lives in its own module under ``vtwcli.cli``; none of them imports torch or
transformers at module level, so ``vtw --help`` answers at once. Errors a user can fix
(:class:`vtwcli.errors.VTWError`) become one line on stderr and exit code 2; ``--debug``
(or ``VTW_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from vtwcli.errors import VTWError

_state = {"debug": False}


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get("VTW_DEBUG", "") not in ("", "0")


def console(stderr: bool = False):
    """A rich console; when the stream is piped or redirected, wide enough that tables and
    status lines are not wrapped at 80 columns."""
    from rich.console import Console

    out = Console(stderr=stderr)
    return out if out.is_terminal else Console(stderr=stderr, width=160)


# What --help shows after an option that takes a value (flags show nothing). Options not named
# here get a name from their type: N (whole number), NUMBER, PATH, TEXT.
_METAVARS = {
    **dict.fromkeys(("--json", "--csv", "--markdown", "--output", "--out", "--plot", "--input"), "FILE"),
    **dict.fromkeys(("--profile", "--image", "--video"), "FILE"),
    **dict.fromkeys(("--model", "--data"), "NAME"),
    "--data-path": "PATH",
    "--task": "TASK",
    "--split": "SPLIT",
    "--k": "K",
    "--fastv-k": "K",
    "--k-min": "K",
    "--k-max": "K",
    "--eta": "NUMBER",
    "--methods": "LIST",
    "--direction": "DIRECTION",
    "--prompt": "TEXT",
    "--dtype": "DTYPE",
    "--device": "DEVICE",
    "--attn": "IMPL",
    "--device-map": "MAP",
    "--method": "METHOD",
}
_TYPE_METAVARS = {"int": "N", "float": "NUMBER", "Path": "PATH", "str": "TEXT"}


def _set_metavars(command) -> None:
    """Proper metavars for every option of ``command`` (and its subcommands), in one place."""
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", None) != "option" or param.metavar is not None:
            continue
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
            continue
        named = next((_METAVARS[o] for o in param.opts if o in _METAVARS), None)
        try:
            bare = param.bare_type()
        except Exception:  # a type typer cannot name: its own display stays
            continue
        param.metavar = named or _TYPE_METAVARS.get(bare, "VALUE")
    make_help = getattr(command, "get_help_option", None)
    if make_help is not None and not getattr(make_help, "_vtw", False):

        def help_option(ctx, _make=make_help):
            opt = _make(ctx)
            if opt is not None:
                opt.metavar = ""  # --help is a flag too
            return opt

        help_option._vtw = True
        command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _set_metavars(sub)


class _VTWGroup(TyperGroup):
    """Turns VTWError (and a few common OS errors) into one clear line and exit 2; sets metavars."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _set_metavars(self)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Typer's own usage errors (unknown option, missing or malformed value) as one line too."""
        if not standalone_mode:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                                **extra)  # fmt: skip
        from typer import _click
        from typer.exceptions import Abort

        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)  # fmt: skip
        except _click.exceptions.NoArgsIsHelpError as err:
            err.show()
            sys.exit(err.exit_code)
        except _click.exceptions.ClickException as err:
            if debug_enabled():
                raise
            ctx = getattr(err, "ctx", None)
            where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
            message = " ".join(err.format_message().split()).rstrip(".")
            typer.echo(f"error: {message}{where}", err=True)
            sys.exit(err.exit_code)
        except Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VTWError as err:
            from vtwcli.distributed import reported_by_rank_zero

            if reported_by_rank_zero(err):
                raise typer.Exit(err.exit_code) from None
            if debug_enabled():
                raise
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            typer.echo("interrupted: nothing was written for the unfinished work", err=True)
            raise typer.Exit(130) from None
        except Exception as err:
            from typer import _click
            from typer.exceptions import Abort, Exit

            if debug_enabled() or isinstance(err, (_click.exceptions.ClickException, Exit, Abort)):
                raise
            from vtwcli.models.synthetic import torchvision_problem

            problem = torchvision_problem()  # a broken torchvision breaks transformers' imports
            if problem is None:
                raise
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_VTWGroup,
    name="vtw",
    help=(
        "Visual Tokens Withdrawal for multimodal LLMs: withdraw the vision tokens before "
        "decoder layer K and answer faster with the same answers.\n\n"
        "Start here (no downloads, runs the bundled testbed model):\n\n"
        "  vtw bench\n\n"
        "  vtw calibrate --model testbed --data shapes\n\n"
        "  vtw run --image photo.png --prompt 'What colour is the square?'"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool):
    if value:
        from vtwcli import __version__

        typer.echo(f"vtw {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
):
    _state["debug"] = debug


def _register() -> None:
    # Imported here so each command module stays independent; they import nothing heavy.
    from vtwcli.cli import bench_cmd, calibrate_cmd, datasets_cmd, inspect_cmd, models_cmd, run_cmd

    for module in (calibrate_cmd, bench_cmd, run_cmd, inspect_cmd, models_cmd, datasets_cmd):
        module.register(app)


_register()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
