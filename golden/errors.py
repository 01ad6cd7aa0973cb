"""Errors a user can cause, defined at the bottom layer so every layer can raise them.

``pact.errors.UserError`` is this very class (re-exported): the CLI prints it as one line and
exits with code 2.
"""

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do."""
