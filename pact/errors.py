"""Errors a user can cause. The CLI prints them as one line and exits with code 2.

The class lives in ``golden.errors`` (the bottom layer, so ``golden`` never imports ``pact``);
this is the same class object, re-exported for the layers above.
"""

from golden.errors import UserError

__all__ = ["UserError"]
