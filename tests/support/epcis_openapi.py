"""GS1's EPCIS 2.0 REST binding (openapi.yaml, in shared/conformance) made
usable offline: its `$ref`s to gs1.github.io point at the binding's own JSON
Schema stub (shipped beside it) and its remote examples are dropped, so an
independent OpenAPI client can load it without the network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STUB = "https://gs1.github.io/EPCIS/REST%20Bindings/JSON-Schema-Stub.json"


def offline_binding(rest_dir: Path) -> dict[str, Any]:
    import yaml

    spec = yaml.safe_load((rest_dir / "openapi.yaml").read_text(encoding="utf-8"))
    stub = json.loads((rest_dir / "JSON-Schema-Stub.json").read_text(encoding="utf-8"))
    return _local(spec, stub["definitions"])


def _local(value: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith(STUB + "#/definitions/"):
            return dict(definitions[ref.rsplit("/", 1)[1]])
        if "oneOf" in value:  # the stub makes every EPCIS body `{"type": "object"}`, so a
            # oneOf of two of them matches neither; anyOf keeps what the binding means
            members = [_local(child, definitions) for child in value["oneOf"]]
            if len({json.dumps(m, sort_keys=True) for m in members}) < len(members):
                rest = {k: v for k, v in value.items() if k != "oneOf"}
                return {**_local(rest, definitions), "anyOf": members}
        return {
            key: _local(child, definitions)
            for key, child in value.items()
            if not (
                key == "example"
                and isinstance(child, dict)
                and str(child.get("$ref", "")).startswith("https://")
            )
        }
    if isinstance(value, list):
        return [_local(child, definitions) for child in value]
    return value
