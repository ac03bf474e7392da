"""One way to refuse a bad value: :class:`ConfigError` and the checks that raise it.

Every message has the same form, ``KEY=VALUE is not accepted; accepted: WHAT``, so a
user always learns which key was wrong, what it held and what would be accepted.
Configuration sections (dataclasses) call these checks in ``__post_init__``; plugin
constructors build their section, so a plugin and the CLI refuse a value with the
same words.

Example:
    >>> check_number("alpha", 0.4, above=0.0)
    0.4
    >>> check_choice("measure", "mi", ("subspace", "cka"))
    Traceback (most recent call last):
    ...
    avalanche_freeze.validation.ConfigError: measure='mi' is not accepted; accepted: subspace, cka
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

__all__ = ["ConfigError", "check_choice", "check_number", "not_accepted"]


class ConfigError(ValueError):
    """A configuration key or value is not accepted.

    Attributes:
        key: the (possibly dotted) name of the offending key, when known.
    """

    def __init__(self, message: str, *, key: Optional[str] = None) -> None:
        super().__init__(message)
        self.key = key

    def within(self, section: str) -> "ConfigError":
        """The same error, its key prefixed with ``section.`` (for nested configurations)."""
        message = str(self)
        if self.key is not None and message.startswith(self.key):
            return ConfigError(f"{section}.{message}", key=f"{section}.{self.key}")
        return ConfigError(f"{section}: {message}", key=section)


def not_accepted(key: str, value: Any, accepted: str) -> ConfigError:
    """The error for ``key=value``, saying what is accepted."""
    return ConfigError(f"{key}={value!r} is not accepted; accepted: {accepted}", key=key)


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``; raises :class:`ConfigError` otherwise."""
    choices = list(choices)
    if value not in choices:
        raise not_accepted(key, value, ", ".join(map(str, choices)))
    return value


def check_number(
    key: str,
    value: Any,
    *,
    at_least: Optional[float] = None,
    above: Optional[float] = None,
    at_most: Optional[float] = None,
    below: Optional[float] = None,
    integer: bool = False,
    optional: bool = False,
) -> Any:
    """``value`` if it is a finite number in range; raises :class:`ConfigError` otherwise.

    Args:
        key: name used in the message.
        value: the value to check (``None`` only with ``optional``).
        at_least, above, at_most, below: inclusive / exclusive bounds.
        integer: require an ``int`` (``bool`` is refused).
        optional: accept ``None``.
    """
    if value is None and optional:
        return value
    parts = [f"{sign} {_bound(b)}" for sign, b in ((">=", at_least), (">", above), ("<=", at_most), ("<", below))
             if b is not None]
    kind = "an integer" if integer else "a finite number"
    accepted = f"{kind}{' ' + ' and '.join(parts) if parts else ''}{' or null' if optional else ''}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise not_accepted(key, value, accepted)
    if not math.isfinite(value):
        raise not_accepted(key, value, accepted)
    if ((at_least is not None and value < at_least) or (above is not None and value <= above)
            or (at_most is not None and value > at_most) or (below is not None and value >= below)):
        raise not_accepted(key, value, accepted)
    return value
