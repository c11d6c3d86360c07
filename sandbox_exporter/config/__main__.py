"""``python -m sandbox_exporter.config --schema``: print the configuration's JSON Schema.

The file shipped as ``config/sandbox-exporter.schema.json`` is this output;
regenerate it with ``python -m sandbox_exporter.config --schema >
config/sandbox-exporter.schema.json`` after changing :mod:`.models`.
"""

from __future__ import annotations

import argparse
import json

from . import json_schema


def schema_text() -> str:
    """The schema file's exact content."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox_exporter.config")
    parser.add_argument(
        "--schema", action="store_true", required=True, help="print the JSON Schema of the file"
    )
    parser.parse_args(argv)
    print(schema_text(), end="")


if __name__ == "__main__":
    main()
