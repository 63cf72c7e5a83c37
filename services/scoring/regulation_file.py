"""Reading a regulation file (YAML) the way its authors mean it.

YAML 1.1 reads `on`, `off`, `yes` and `no` as booleans, so a rule's `on: attendance.recorded`
would lose its key; here only `true` and `false` are booleans. Dates stay dates.

A regulation file comes from people and over HTTP, so it is read with limits: no aliases (`*x`:
a "billion laughs" of nested aliases grows a few hundred bytes into gigabytes), at most
MAX_FILE_BYTES, nested at most MAX_DEPTH deep. A regulation needs none of these.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DEFAULT_REGULATION = Path(__file__).resolve().parent / "regulations" / "nde-2010.yaml"


#: The largest regulation file read: the shipped one is 6 KB, the largest document the
#: limits of services.scoring.domain.regulation allow is about 100 KB.
MAX_FILE_BYTES = 512 * 1024
#: Mappings and lists nested at most this deep (a regulation nests four: rules, a rule, when,
#: a list of values).
MAX_DEPTH = 16


class RegulationFileError(ValueError):
    pass


class _RegulationLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and deep nesting while it composes the document, before
    anything is expanded."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise RegulationFileError(
                f"aliases (*{event.anchor}) are not allowed in a regulation file "
                f"(line {event.start_mark.line + 1}): write the value out"
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise RegulationFileError(
                    f"nested deeper than {MAX_DEPTH} levels (line {mark.line + 1})"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_RegulationLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RegulationLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|false|True|False|TRUE|FALSE)$"),
    list("tTfF"),
)


def load_regulation(text: str) -> dict[str, Any]:
    size = len(text.encode("utf-8"))
    if size > MAX_FILE_BYTES:
        raise RegulationFileError(
            f"{size} bytes: a regulation file has at most {MAX_FILE_BYTES} bytes"
        )
    try:
        loaded = yaml.load(text, Loader=_RegulationLoader)
    except yaml.YAMLError as error:
        raise RegulationFileError(f"not valid YAML: {error}") from None
    if not isinstance(loaded, dict):
        raise RegulationFileError("a regulation is a mapping of fields (id, version, rules …)")
    return loaded


def read_regulation_file(path: Path) -> str:
    """A regulation file's text, refused before it is read when it is too large."""
    with path.open("rb") as file:
        raw = file.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise RegulationFileError(
            f"larger than {MAX_FILE_BYTES} bytes: a regulation file has at most that"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RegulationFileError("not UTF-8 text") from None


def default_regulation() -> dict[str, Any]:
    return load_regulation(DEFAULT_REGULATION.read_text(encoding="utf-8"))
