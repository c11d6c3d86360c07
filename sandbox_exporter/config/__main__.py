"""``python -m sandbox_exporter.config --schema``: print the configuration's JSON Schema,
the file shipped as ``config/sandbox-exporter.schema.json``."""

import json
import sys

from .models import Config

if sys.argv[1:] != ["--schema"]:
    sys.exit("usage: python -m sandbox_exporter.config --schema")
# Draft 7: the newest that every editor's YAML language server reads.
schema = {"$schema": "http://json-schema.org/draft-07/schema#", **Config.model_json_schema()}
print(json.dumps(schema, indent=2, ensure_ascii=False))
