"""Config dataclasses from plain dicts (JSON jobs, checkpoints, model packages).

One strict conversion for every config class: unknown keys are an error that names them, and
lists become tuples where the field is a tuple (JSON and YAML have no tuples).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """``cls(**data)`` for a dataclass ``cls``; ``ValueError`` naming any field ``cls`` does not have."""
    unknown = sorted(set(data) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
    if unknown:
        raise ValueError(f"unknown {_label(cls)} fields: {unknown}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: tuple(value) if isinstance(value, list) and _is_tuple(hints[name]) else value
                  for name, value in data.items()})


def _label(cls: type) -> str:
    """How a config class is named in messages: ``TrainConfig`` → ``train config``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", cls.__name__).lower()


def _is_tuple(hint: Any) -> bool:
    """Whether a type hint is a tuple, or a union (``tuple[...] | None``) that admits one."""
    origin = typing.get_origin(hint)
    if hint is tuple or origin is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple(arg) for arg in typing.get_args(hint))
    return False
