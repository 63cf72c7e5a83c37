"""Reading a regulation file (YAML) the way its authors mean it.

YAML 1.1 reads `on`, `off`, `yes` and `no` as booleans, so a rule's `on: attendance.recorded`
would lose its key; here only `true` and `false` are booleans. Dates stay dates.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DEFAULT_REGULATION = Path(__file__).resolve().parent / "regulations" / "nde-2010.yaml"


class _RegulationLoader(yaml.SafeLoader):
    pass


_RegulationLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RegulationLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|false|True|False|TRUE|FALSE)$"),
    list("tTfF"),
)


class RegulationFileError(ValueError):
    pass


def load_regulation(text: str) -> dict[str, Any]:
    try:
        loaded = yaml.load(text, Loader=_RegulationLoader)
    except yaml.YAMLError as error:
        raise RegulationFileError(f"not valid YAML: {error}") from None
    if not isinstance(loaded, dict):
        raise RegulationFileError("a regulation is a mapping of fields (id, version, rules …)")
    return loaded


def default_regulation() -> dict[str, Any]:
    return load_regulation(DEFAULT_REGULATION.read_text(encoding="utf-8"))
