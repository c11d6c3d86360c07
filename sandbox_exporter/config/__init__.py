"""The configuration file (``config/example.yml`` documents every key): YAML ->
validated, frozen objects. The types in :mod:`.models` are the configuration and
its JSON Schema; every problem is reported at once, with its key path and YAML
position, and a file that loads is a file the exporter can run with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

# What the rest of the package uses; tests and tools import the modules.
from .models import DEFAULT_INTERVALS as DEFAULT_INTERVALS
from .models import Canary as Canary
from .models import Config, Defaults, Target
from .models import Expectations as Expectations
from .problems import ConfigError, Problem, other_kind, problems_of, render, watches_nothing
from .rules import check, duplicate_names, resolve_defaults, resolve_target
from .sharing import share_equal_settings
from .yamlfile import load_yaml_with_positions, read_text


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the configuration file at ``path``; relative paths in it
    (secret files, CA bundles) start from its directory. Raises :class:`ConfigError`."""
    file_path = Path(path)
    text = read_text(file_path, "configuration file")
    return parse_config(text, source=str(file_path), base_dir=file_path.absolute().parent)


def parse_config(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> Config:
    """Validate configuration ``text``; relative paths resolve against ``base_dir``
    (default: the current directory). Raises :class:`ConfigError` listing every problem."""
    document, positions = load_yaml_with_positions(text, source)
    # Where relative file names start (fields.py reads it; *_env read os.environ).
    context: dict[str, Any] = {"base_dir": base_dir}
    problems: list[Problem] = []
    try:
        written = Config.model_validate({} if document is None else document, context=context)
    except ValidationError as error:
        problems.extend(problems_of(error, Config))
        defaults, targets = _valid_parts(document, problems, context)
    else:
        defaults, targets = written.defaults, list(enumerate(written.targets))
    if defaults is not None:
        problems.extend(check(defaults, Defaults(), ("defaults",)))
        for index, target in targets:
            problems.extend(check(target, defaults, ("targets", index)))
    problems.extend(duplicate_names(targets))
    if problems:
        # Another program's file fails on every key: say what it is instead.
        kind = other_kind(document, list(Config.model_fields), source)
        raise ConfigError([kind] if kind else render(problems, positions), source)
    return written.model_copy(
        update={
            "defaults": resolve_defaults(written.defaults),
            "targets": share_equal_settings(
                resolve_target(t, written.defaults) for t in written.targets
            ),
        }
    )


def _valid_parts(
    document: Any, problems: list[Problem], context: dict[str, Any]
) -> tuple[Defaults | None, list[tuple[int, Target]]]:
    """The defaults and targets valid on their own, for the rules between them
    to be checked when another part is broken (no defaults if they are)."""
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


def empty_config_note(config: Config) -> str | None:
    """A warning for a valid configuration that lists no targets, else None."""
    if config.targets:
        return None
    return watches_nothing(config.probe_endpoint.allow_unlisted_targets)


def config_for_url(url: str, defaults: Defaults | None = None) -> Config:
    """A configuration with a single target at ``url`` (for ``--url`` and
    ``/probe?target=URL``): named after the URL's host (``host:port`` when a
    port is given), everything else from ``defaults`` (built-in defaults if
    ``None``), no credentials."""
    defaults = defaults if defaults is not None else resolve_defaults(Defaults())
    try:
        target = Target(url=url)
    except ValidationError as error:
        raise ConfigError(render(list(problems_of(error, Target))), "<url>") from None
    return Config().model_copy(
        update={"defaults": defaults, "targets": (resolve_target(target, defaults),)}
    )
