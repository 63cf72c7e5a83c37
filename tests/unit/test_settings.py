"""Every setting is documented in the README with its environment variable and default."""

from __future__ import annotations

from pathlib import Path

from runtime.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_with_its_default() -> None:
    text = README.read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        variable = f"PARTY_{name.upper()}"
        row = next(
            (line for line in text.splitlines() if line.startswith(f"| `{variable}` |")), None
        )
        assert row is not None, f"{variable} is not documented in README.md"
        default = field.get_default(call_default_factory=True)
        if hasattr(default, "get_secret_value"):
            continue  # secrets are not printed
        shown = "—" if default is None else str(default)
        assert shown in row, f"README row for {variable} does not show its default {shown!r}"
