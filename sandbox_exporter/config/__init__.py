"""The configuration file: YAML -> validated, frozen objects.

Everything the exporter does comes from a :class:`Config`: which sandboxes to
watch (``targets``), how often and how patiently to probe them, which canary
programs to run, which library versions to expect, and who may ask ``/probe``
for a URL that is not listed. ``config/example.yml`` documents every key.

The types in :mod:`.models` are the configuration: pydantic validates a
document against them, and the JSON Schema that editors use
(``config/sandbox-exporter.schema.json``, ``python -m sandbox_exporter.config
--schema``) is generated from them. Validation is complete: every problem is
reported at once, as ``"<key path>: <what is wrong> (line L, column C)"``
(``targets[2].canaries[0].timeout: invalid duration '5 seconds' (use e.g. 10s,
1m) (line 14, column 9)``), and a file that loads is a file the exporter can
run with. Secrets are read from files or environment variables while loading
and held in :class:`Secret`, whose ``str``/``repr`` never show them; no error
message ever contains a secret value. :mod:`.rules` says what targets take
from ``defaults`` and how timeouts must fit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..expectations import Expectations
from .canary import DEFAULT_CANARY, DEFAULT_CANARY_TIMEOUT, Canary
from .connection import TLS, Auth
from .durations import MAX_DURATION_SECONDS, format_duration, parse_duration
from .errors import ConfigError
from .fields import RESERVED_LABEL_NAMES, Secret
from .models import (
    SEVERITY_LEVELS,
    Config,
    Defaults,
    ProbeEndpoint,
    Severities,
    Target,
    Thresholds,
)
from .problems import Problem, json_schema, problems_of, render
from .rules import check_defaults, check_target, duplicate_names, resolve_defaults, resolve_target
from .section import DEFAULT_INTERVALS, DEFAULT_TIMEOUTS
from .sharing import share_equal_settings
from .yamlfile import load_yaml, load_yaml_with_positions

__all__ = [
    "DEFAULT_CANARY",
    "DEFAULT_CANARY_TIMEOUT",
    "DEFAULT_INTERVALS",
    "DEFAULT_TIMEOUTS",
    "MAX_DURATION_SECONDS",
    "RESERVED_LABEL_NAMES",
    "SEVERITY_LEVELS",
    "TLS",
    "Auth",
    "Canary",
    "Config",
    "ConfigError",
    "Defaults",
    "Expectations",
    "ProbeEndpoint",
    "Secret",
    "Severities",
    "Target",
    "Thresholds",
    "config_for_url",
    "format_duration",
    "json_schema",
    "load_config",
    "load_yaml",
    "parse_config",
    "parse_duration",
]


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the configuration file at ``path``.

    Relative paths inside it (secret files, CA bundles) are resolved against
    the file's own directory. Raises :class:`ConfigError`.
    """
    file_path = Path(path)
    source = str(file_path)
    try:
        data = file_path.read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError([f"cannot read the configuration file: {reason}"], source) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            [f"not UTF-8 text (invalid byte at offset {error.start})"], source
        ) from None
    return parse_config(text, source=source, base_dir=file_path.absolute().parent)


def parse_config(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> Config:
    """Validate configuration ``text``; relative paths resolve against ``base_dir``
    (default: the current directory). Raises :class:`ConfigError` listing every problem."""
    document, positions = load_yaml_with_positions(text, source)
    # What validators read besides the document: where relative file names
    # start, and where *_env secrets come from.
    context: dict[str, Any] = {
        "base_dir": Path(base_dir) if base_dir is not None else Path.cwd(),
        "environ": os.environ,
    }
    problems: list[Problem] = []
    try:
        written = Config.model_validate({} if document is None else document, context=context)
    except ValidationError as error:
        problems.extend(problems_of(error))
        defaults, targets = _valid_parts(document, problems, context)
    else:
        defaults, targets = written.defaults, list(enumerate(written.targets))
    if defaults is not None:
        problems.extend(check_defaults(defaults))
        for index, target in targets:
            problems.extend(check_target(target, defaults, ("targets", index)))
    problems.extend(duplicate_names(targets))
    if problems:
        raise ConfigError(render(problems, positions), source)
    config = written.model_copy(
        update={
            "defaults": resolve_defaults(written.defaults),
            "targets": share_equal_settings(
                resolve_target(t, written.defaults) for t in written.targets
            ),
        }
    )
    config._source = source
    return config


def _valid_parts(
    document: Any, problems: list[Problem], context: dict[str, Any]
) -> tuple[Defaults | None, list[tuple[int, Target]]]:
    """The defaults and targets that are valid on their own, so that the rules
    between them are checked even when another part of the file is broken
    (``None`` for defaults in error: checking targets against them would only
    repeat their problems)."""
    if not isinstance(document, dict):
        return None, []
    broken = {location[:2] for location, _ in problems}
    defaults = None
    if not any(location[:1] == ("defaults",) for location in broken):
        defaults = Defaults.model_validate(document.get("defaults") or {}, context=context)
    targets = document.get("targets")
    if not isinstance(targets, list) or ("targets",) in broken:
        return defaults, []
    return defaults, [
        (index, Target.model_validate(raw, context=context))
        for index, raw in enumerate(targets)
        if ("targets", index) not in broken
    ]


def config_for_url(url: str, defaults: Defaults | None = None) -> Config:
    """A configuration with a single target at ``url`` (for ``--url`` and
    ``/probe?target=URL``): named after the URL's host (``host:port`` when a
    port is given), everything else from ``defaults`` (built-in defaults if
    ``None``), no credentials."""
    defaults = defaults if defaults is not None else Defaults()
    try:
        target = Target(url=url)
    except ValidationError as error:
        raise ConfigError(render(list(problems_of(error))), "<url>") from None
    config = Config().model_copy(
        update={"defaults": defaults, "targets": (resolve_target(target, defaults),)}
    )
    config._source = "<url>"
    return config
