"""``python -m sandbox_exporter.config --schema``: print the configuration's JSON Schema,
the file shipped as ``config/sandbox-exporter.schema.json``."""

from __future__ import annotations

import argparse
import json

from .models import Config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox_exporter.config")
    parser.add_argument("--schema", action="store_true", required=True, help="print the schema")
    parser.parse_args(argv)
    # Draft 7: the newest that every editor's YAML language server reads.
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", **Config.model_json_schema()}
    print(json.dumps(schema, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
