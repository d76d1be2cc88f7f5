"""The error types every command raises; ``cli.main`` turns them into one line on stderr."""

from __future__ import annotations


class LorakitError(Exception):
    """A failure the user can act on: ``message`` says what is wrong, ``hint`` what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message.rstrip(".")
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())


class UsageError(LorakitError):
    """The command line itself is wrong (exit code 2, like click's usage errors)."""

    exit_code = 2


class ModelNotFound(LorakitError):
    pass


class AdapterError(LorakitError):
    """An adapter is missing, malformed, empty or does not fit the base model."""


class CapabilityError(LorakitError):
    """The chosen loader backend cannot do what was asked."""


class PluginError(LorakitError):
    pass
