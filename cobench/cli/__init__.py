"""The `cobench` command line: parsing and rendering only — each command calls one function of the core.

Every command takes --json (data only on stdout). Errors are one line on stderr naming the field and
the problem, with a non-zero exit; --debug (or COBENCH_DEBUG=1) shows the traceback instead. One module
per command group; importing them registers their commands on `app`.
"""

from cobench.cli import (  # noqa: F401
    arch,
    calibrate,
    devices,
    doctor,
    fit,
    kernels,
    pareto,
    predict,
    profile,
    report,
    store,
    sweep,
    train,
)
from cobench.cli.app import app


def main() -> None:
    """Console entry point (click maps its own usage errors to exit code 2)."""
    app()
