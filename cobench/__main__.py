"""`python -m cobench` is the same as the `cobench` command."""

from cobench.cli import main

main()
