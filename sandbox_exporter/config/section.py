"""The base of every model of the configuration, and the per-probe-kind durations.

Every model is strict (YAML ``yes`` is not a string, ``"5"`` is not a number),
refuses unknown keys and is frozen (the scheduler compares and hashes targets).
The docstring under each field is its documentation in the JSON Schema, which
editors show. A key set to null, or not written, keeps its default; for a
target, "default" means the ``defaults`` section (see :mod:`.rules`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ..expectations import Expectations
from ..vocabulary import PROBES
from .fields import Duration

# Why these numbers: /usages/ takes about 2 s on the server (it samples I/O for
# 2 s) and /libraries/ starts a fresh container on every call, so usage is
# polled often but not hard, and libraries (which change with deployments,
# not minutes) once an hour. Each timeout leaves room before the next run.
_INTERVAL_SECONDS = {"specifications": 30.0, "usage": 15.0, "libraries": 3600.0, "canary": 30.0}
_TIMEOUT_SECONDS = {"specifications": 10.0, "usage": 10.0, "libraries": 60.0, "canary": 20.0}


class Section(BaseModel):
    """A mapping of the configuration file."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        # Lets pydantic write defaults such as FrozenDict() into the JSON Schema.
        arbitrary_types_allowed=True,
    )
    #: Keys people write by mistake, with the advice their error gives instead of "unknown key".
    refused_keys: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _null_sections_are_unset(cls, data: Any) -> Any:
        # `canaries:` with nothing after it reads as null: it means "as by default".
        if isinstance(data, dict):
            sections = _sections(cls)
            return {k: v for k, v in data.items() if v is not None or k not in sections}
        return data


def no_default(schema: dict[str, Any]) -> None:
    """For ``json_schema_extra``: a default that is not a value to write (an
    editor would offer it), but stands for "derived" or "not set"."""
    schema.pop("default", None)


@functools.cache
def _sections(model: type[BaseModel]) -> frozenset[str]:
    collections = (BaseModel, tuple, Mapping, Expectations)
    return frozenset(
        name for name, field in model.model_fields.items() if isinstance(field.default, collections)
    )


class ProbeTimes(Section, Mapping):  # type: ignore[misc]
    """Seconds per probe kind; reads as a mapping (``target.intervals["usage"]``)."""

    def __getitem__(self, kind: str) -> float:
        if kind not in type(self).model_fields:
            raise KeyError(kind)
        return getattr(self, kind)

    def __iter__(self) -> Any:  # the probe kinds, as a mapping's keys
        return iter(type(self).model_fields)

    def __len__(self) -> int:
        return len(type(self).model_fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self.items()))


def _probe_times(name: str, doc: str, seconds: Mapping[str, float]) -> Any:
    fields: dict[str, Any] = {
        kind: (Duration, Field(default=seconds[kind], description=f"For the {kind} probe."))
        for kind in PROBES
    }
    return create_model(name, __base__=ProbeTimes, __doc__=doc, **fields)


Intervals = _probe_times(
    "Intervals", "How often each probe runs (a duration such as 30s or 1h).", _INTERVAL_SECONDS
)
Timeouts = _probe_times(
    "Timeouts",
    "How long each probe may take: a hard deadline, at most its interval.",
    _TIMEOUT_SECONDS,
)
DEFAULT_INTERVALS: Mapping[str, float] = Intervals()
DEFAULT_TIMEOUTS: Mapping[str, float] = Timeouts()
