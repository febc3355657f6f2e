"""The typer app and its one error boundary: domain errors become one stderr line and an exit code."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.text import Text

from cobench import __version__
from cobench.cli.render import err, out
from cobench.errors import CobenchError

F = TypeVar("F", bound=Callable[..., Any])
STATE = {"debug": os.environ.get("COBENCH_DEBUG") == "1"}


def typer_app(help_text: str) -> typer.Typer:
    """A command group whose help is plain text: `[default …]` and `[env …]` are shown, not eaten as markup."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )


app = typer_app("Roofline latency modelling and on-device profiling for hardware co-design of small LLMs.")


def handles_errors(fn: F) -> F:
    """Map domain errors to one stderr line and their exit code (traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CobenchError as e:
            if STATE["debug"]:
                raise
            err.print(Text.assemble(("error:", "red"), f" {e}"))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted: everything committed so far is kept; run the same command again to resume")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors (also COBENCH_DEBUG=1).")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    STATE["debug"] = debug or os.environ.get("COBENCH_DEBUG") == "1"
    if version:
        out.print(f"cobench {__version__}")
        raise typer.Exit()
