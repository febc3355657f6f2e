"""The `cobench` command line: a thin shell over the pure core (architecture → operators → roofline).

Every command takes --json (data only on stdout). Errors are one line on stderr naming the field and
the problem, with a non-zero exit; --debug (or COBENCH_DEBUG=1) shows the traceback instead. One module
per command group; importing them registers their commands on `app`.
"""

from cobench.cli import (  # noqa: F401
    arch,
    calibrate,
    devices,
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
from cobench.cli.common import app


def main() -> None:
    """Console entry point (click maps its own usage errors to exit code 2)."""
    app()
