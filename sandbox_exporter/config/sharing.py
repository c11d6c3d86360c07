"""Targets hold equal settings as one object each.

Resolving gives every target its own copies of the defaults' timeouts and
fitted canaries (about 2 KiB a target, 2 MiB at 1000 targets); they are
frozen, so equal ones can be one instance, shared for the life of the
configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .models import Target


def share_equal_settings(targets: Iterable[Target]) -> tuple[Target, ...]:
    """``targets`` with equal timeouts and canaries held as one object each.

    Equal includes the keys written (``model_fields_set``): they decide how a
    canary's timeout is checked, and equality alone does not compare them.
    """
    seen: dict[object, Any] = {}

    def shared(value: Any) -> Any:
        if isinstance(value, tuple):
            value = tuple(map(shared, value))
            key: object = (tuple, *map(id, value))  # the items are kept alive in `seen`
        else:
            key = (value, frozenset(getattr(value, "model_fields_set", ())))
        try:
            return seen.setdefault(key, value)
        except TypeError:  # a value holding a mapping (a command's options)
            return value

    return tuple(
        target.model_copy(
            update={"timeouts": shared(target.timeouts), "canaries": shared(target.canaries)}
        )
        for target in targets
    )
