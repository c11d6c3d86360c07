"""Reading YAML strictly, and remembering where each key was written.

Used for both configuration files (``-c`` and ``--web.config.file``): safe
loading only, duplicate keys refused, errors as ``line L, column C: ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .problems import ConfigError, Location, Positions


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of the ``what`` at ``path``; :class:`ConfigError` if it cannot be read."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError([f"cannot read the {what}: {reason}"], str(path)) from None
    except UnicodeDecodeError as error:
        reason = f"not UTF-8 text (invalid byte at offset {error.start})"
        raise ConfigError([reason], str(path)) from None


def load_yaml_with_positions(text: str, source: str) -> tuple[Any, Positions]:
    """The document in ``text`` and where each of its keys and items was written;
    :class:`ConfigError` with line and column if it is not YAML."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # safe: no arbitrary objects
        node = loader.get_single_node()
        if node is None:
            return None, {}
        positions: Positions = {}
        _record(node, (), positions, set())
        return loader.construct_document(node), positions
    except yaml.MarkedYAMLError as error:
        raise ConfigError([_describe_yaml_error(error)], source) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"invalid YAML: {' '.join(str(error).split())}"], source) from None
    except RecursionError:
        raise ConfigError(["invalid YAML: the document is nested too deeply"], source) from None
    finally:
        if loader is not None:
            loader.dispose()


# Aliases can repeat a block many times over; positions are a courtesy, not
# worth more than this many entries.
_MAX_POSITIONS = 100_000


def _record(node: yaml.Node, here: Location, positions: Positions, inside: set[int]) -> None:
    """Record where each key and item below ``node`` was written; a block reused
    through an alias, under each path that uses it."""
    if id(node) in inside or len(positions) > _MAX_POSITIONS:
        return  # a recursive alias, or a document too repetitive to map
    inside.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            positions[(*here, index)] = _mark(item)
            _record(item, (*here, index), positions, inside)
    elif isinstance(node, yaml.MappingNode):
        own = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        merged = [
            pair
            for k, v in node.value
            if k.tag == "tag:yaml.org,2002:merge"
            for source in (v.value if isinstance(v, yaml.SequenceNode) else [v])
            if isinstance(source, yaml.MappingNode)
            for pair in source.value
        ]
        seen: set[str] = set()
        for key_node in (k for k, _ in own if isinstance(k, yaml.ScalarNode)):
            # PyYAML would silently keep the last; a key written twice is a mistake.
            if key_node.value in seen:
                duplicate = f"duplicate key {key_node.value!r}"
                raise yaml.MarkedYAMLError(problem=duplicate, problem_mark=key_node.start_mark)
            seen.add(key_node.value)
        for key_node, value_node in own + merged:  # a mapping's own keys win over merged ones
            if isinstance(key_node, yaml.ScalarNode) and (*here, key_node.value) not in positions:
                positions[(*here, key_node.value)] = _mark(key_node)
                _record(value_node, (*here, key_node.value), positions, inside)
    inside.discard(id(node))


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    def at(mark: yaml.Mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    mark = error.problem_mark or error.context_mark
    message = f"{at(mark) if mark else 'YAML'}: {error.problem or error.context or 'invalid YAML'}"
    if error.context and error.problem and error.context_mark is not None:
        message += f" ({error.context} at {at(error.context_mark)})"
    return message
