"""Domain errors. The CLI maps each to one line on stderr and an exit code; tracebacks only with --debug."""

from __future__ import annotations


class CobenchError(Exception):
    """Base of every error a user can cause or fix; its message is the one line the CLI prints."""

    exit_code = 1


class InputError(CobenchError):
    """Invalid user input: names the field (dotted path) and the problem."""

    exit_code = 2

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class MissingDependency(CobenchError):
    """An optional backend is absent; the message says what to install (and where it comes from)."""

    exit_code = 3


class StoreError(CobenchError):
    """The store cannot be opened or is from an incompatible future version."""

    exit_code = 4
