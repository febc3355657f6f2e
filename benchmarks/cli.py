"""The benchmarks drive cobench as a user would: through its command line, in this interpreter."""

from __future__ import annotations

import subprocess
import sys


def cobench(*args: str, capture: bool = False) -> str:
    """Run `cobench ARGS`, echoing the command; return its stdout when captured."""
    print("$ cobench " + " ".join(args), flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "cobench", *args], check=True, text=True, stdout=subprocess.PIPE if capture else None
    )
    return done.stdout if capture else ""
