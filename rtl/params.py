"""Parameter validation shared by the blocks: each raises naming the bad value."""


def check_int(name, value, lo, hi=None):
    """Require an ``int`` (not a ``bool``) in ``lo..hi`` (``>= lo`` when ``hi`` is None).

    Raises ``TypeError`` for a non-integer and ``ValueError`` outside the range, both naming
    ``name`` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {rng}, not {value!r}")
