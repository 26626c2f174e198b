"""Keep the Helm chart's values.schema.json in step with the library's typed configs.

    python scripts/chart_schema.py           # rewrite charts/landslide/values.schema.json
    python scripts/chart_schema.py --check   # exit 1 if it is out of date (a test runs this)

The chart-level part of the schema is written by hand in the file itself. The run, sweep and endpoint configs
(train.config, sweep.config, serve.app) are the library's pydantic models, so their JSON schemas are generated
into the file's "$defs" under "landslide.<Model>" names: `helm install` then rejects a mistyped backbone field
or an unknown sweep option before any pod starts, with the same rules `landslide` itself applies (validators
that need code, such as the backbone registry check, still run when the job starts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic.json_schema import models_json_schema

from landslide.config import RunConfig, ServeAppConfig, SweepConfig
from landslide.models.registry import list_backbones

SCHEMA = Path(__file__).resolve().parent.parent / "charts" / "landslide" / "values.schema.json"
PREFIX = "landslide."
MODELS = (RunConfig, SweepConfig, ServeAppConfig)


def _strip(node):
    """Drop what only documents (titles, defaults echoed from values.yaml) to keep the schema readable."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in ("title", "default")}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def generated_defs() -> dict:
    _, top = models_json_schema([(m, "validation") for m in MODELS], ref_template="#/$defs/" + PREFIX + "{model}")
    defs = {PREFIX + name: _strip(schema) for name, schema in sorted(top["$defs"].items())}
    # The backbone check is code (the model registry); spell its names out so Helm can check them too.
    names = list_backbones(aliases=True)
    defs[PREFIX + "ModelConfig"]["properties"]["backbone"]["enum"] = names
    defs[PREFIX + "CompareExperiment"]["properties"]["backbones"]["items"]["enum"] = names
    return defs


def render(current: dict) -> str:
    defs = {k: v for k, v in current.get("$defs", {}).items() if not k.startswith(PREFIX)}
    defs.update(generated_defs())
    return json.dumps({**current, "$defs": defs}, indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = SCHEMA.read_text()
    fresh = render(json.loads(text))
    if "--check" in argv:
        if fresh != text:
            print(f"{SCHEMA.name} is out of date with landslide/config.py: run python scripts/chart_schema.py",
                  file=sys.stderr)
            return 1
        return 0
    SCHEMA.write_text(fresh)
    print(f"wrote {SCHEMA}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
