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
import dataclasses
from typing import Any, Dict, Iterable, Optional, Type, TypeVar

__all__ = ["ConfigError", "build_section", "check_choice", "check_like_default", "check_number", "not_accepted"]

Section = TypeVar("Section")


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


def check_like_default(key: str, value: Any, default: Any) -> Any:
    """``value`` if it has the kind of ``default`` (a free option's default: a finite number for a
    number, ``true``/``false`` for a flag, text for text); raises :class:`ConfigError` otherwise.
    Options whose default is ``None`` or of another kind are not checked here.

    Example:
        >>> check_like_default("options.temperature", 0.2, 0.1)
        0.2
        >>> check_like_default("options.temperature", "abc", 0.1)
        Traceback (most recent call last):
        ...
        avalanche_freeze.validation.ConfigError: options.temperature='abc' is not accepted; accepted: a finite number (default 0.1)
    """
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise not_accepted(key, value, f"true or false (default {str(default).lower()})")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise not_accepted(key, value, f"a finite number (default {default})")
    elif isinstance(default, str) and not isinstance(value, str):
        raise not_accepted(key, value, f"text (default {default!r})")
    return value


def build_section(cls: Type[Section], config: Optional[Section], options: Dict[str, Any], *, owner: str) -> Section:
    """The configuration section a component runs with: ``config`` as given, or ``cls(**options)``.

    Components (plugins) take their section either whole or as keyword options, so each option
    and its default are written once, in the section's dataclass.

    Args:
        cls: the section's dataclass.
        config: a ready section (then ``options`` must be empty).
        options: keyword options for ``cls`` (unknown names are refused, naming the accepted ones).
        owner: the component's name, for messages.

    Example:
        >>> from avalanche_freeze.plugins.config import LUMPConfig
        >>> build_section(LUMPConfig, None, {"mem_size": 64}, owner="LUMPPlugin").mem_size
        64
        >>> build_section(LUMPConfig, None, {"size": 64}, owner="LUMPPlugin")
        Traceback (most recent call last):
        ...
        avalanche_freeze.validation.ConfigError: LUMPPlugin option 'size' is not accepted; accepted: mem_size, alpha
    """
    if config is not None:
        if options:
            raise ConfigError(f"{owner}: give a {cls.__name__} or keyword options ({', '.join(options)}), not both")
        if not isinstance(config, cls):
            raise not_accepted(f"{owner} config", config, f"a {cls.__name__}")
        return config
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for name in options:
        if name not in names:
            raise ConfigError(f"{owner} option {name!r} is not accepted; accepted: {', '.join(names)}", key=name)
    return cls(**options)
