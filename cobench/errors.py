"""Domain errors. The CLI maps each to one line on stderr and an exit code; tracebacks only with --debug."""

from __future__ import annotations


def one_line(text: str) -> str:
    """Line breaks and other control characters from a user's file, escaped: the error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class CobenchError(Exception):
    """Base of every error a user can cause or fix; its message is the one line the CLI prints."""

    exit_code = 1


class InputError(CobenchError):
    """Invalid user input: names the field (dotted path) and the problem."""

    exit_code = 2

    def __init__(self, field: str, problem: str) -> None:
        self.field = one_line(field)
        self.problem = one_line(problem)
        super().__init__(f"{self.field}: {self.problem}")


class MissingDependency(CobenchError):
    """An optional backend is absent; the message says what to install (and where it comes from)."""

    exit_code = 3


class IncompleteRun(CobenchError):
    """Some candidates failed; what finished is stored. Non-zero, so a lab pipeline stops instead of fitting
    on what is missing."""

    exit_code = 5


class StoreError(CobenchError):
    """The store cannot be opened or is from an incompatible future version."""

    exit_code = 4


class ClusterError(CobenchError):
    """The cluster cannot do what was asked: unreachable, no node with the resource, work lost for good."""

    exit_code = 6
