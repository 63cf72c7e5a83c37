"""The generated documents outside systems read: the event contracts (JSON Schema, AsyncAPI,
rendered by contracts.generate) and each service's OpenAPI document, all under contracts/."""

from __future__ import annotations

import json
from pathlib import Path

from contracts import generate
from runtime.http import create_app
from services.registry import SERVICES

OPENAPI_DIR = generate.ROOT / "openapi"


def render_openapi() -> dict[Path, str]:
    rendered = {}
    for name, definition in SERVICES.items():
        document = create_app(definition, configure_logs=False).openapi()
        rendered[OPENAPI_DIR / f"{name}.json"] = (
            json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        )
    return rendered


def stale_documents() -> list[str]:
    stale = generate.stale_files()
    for path, text in render_openapi().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path.relative_to(generate.ROOT.parent)))
    return stale


def write_documents() -> list[str]:
    changed = generate.write()
    OPENAPI_DIR.mkdir(exist_ok=True)
    for path, text in render_openapi().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(str(path.relative_to(generate.ROOT.parent)))
    return changed
