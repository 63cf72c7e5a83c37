"""Cells of exported CSV and XLSX files that a spreadsheet cannot run (OWASP "CSV injection").

A member named `=HYPERLINK("http://…"&A3,"…")` must come out of an export as that text, not as
a formula Excel or LibreOffice evaluates when the file is opened. Every text cell that begins
with `=`, `+`, `-`, `@`, a tab or a carriage return (also after leading spaces, which
spreadsheets skip) gets a leading apostrophe, as OWASP recommends: shown as text, and still
text when the sheet is saved again as CSV. Numbers stay numbers: a text that is a plain decimal
number (`-5.0`, points on a ledger) is left as it is, and so are ints, floats, dates and times.
In an XLSX file every text cell is also stored as a string (data type `s`) explicitly, since
openpyxl takes any str beginning with `=` for a formula.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # openpyxl is imported when a workbook is written (partyctl starts faster)
    from openpyxl.cell.cell import Cell, MergedCell
    from openpyxl.worksheet.worksheet import Worksheet

#: What makes a spreadsheet read a cell as a formula (or DDE command).
DANGEROUS_FIRST = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$")
#: The characters XML 1.0 cannot hold (openpyxl's ILLEGAL_CHARACTERS_RE).
_ILLEGAL_IN_XLSX = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def is_dangerous(text: str) -> bool:
    """Whether a spreadsheet could take this text for a formula."""
    stripped = text.lstrip(" ")
    return stripped.startswith(DANGEROUS_FIRST) and not _PLAIN_NUMBER.match(stripped)


def safe_text(text: str) -> str:
    return "'" + text if is_dangerous(text) else text


def safe_value(value: Any) -> Any:
    """A value for a cell: texts made safe, everything else (numbers, dates) as it is."""
    return safe_text(value) if isinstance(value, str) else value


def safe_row(values: Iterable[Any]) -> list[Any]:
    return [safe_value(v) for v in values]


def safe_rows(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Rows for csv.writer.writerows."""
    return [safe_row(row) for row in rows]


def xlsx_text(text: str) -> str:
    """Text for an XLSX cell: safe, without the control characters XML 1.0 cannot hold
    (openpyxl refuses them, and one in a name would fail the whole export)."""
    return safe_text(_ILLEGAL_IN_XLSX.sub("", text))


def set_cell(cell: Cell | MergedCell, value: Any) -> None:
    """Set a cell so that it can never hold a formula."""
    if isinstance(value, str):
        cell.value = xlsx_text(value)
        cell.data_type = "s"
    else:
        cell.value = value


def xlsx_row(sheet: Worksheet, values: Iterable[Any]) -> list[Any]:
    """Values for Worksheet.append: each text a string cell, never a formula."""
    from openpyxl.cell.cell import Cell

    row: list[Any] = []
    for value in values:
        if isinstance(value, str):
            cell = Cell(sheet, row=1, column=1)  # placed by append
            set_cell(cell, value)
            row.append(cell)
        else:
            row.append(value)
    return row


def append_row(sheet: Worksheet, values: Iterable[Any]) -> None:
    """Worksheet.append, with every text cell a string and never a formula."""
    sheet.append(xlsx_row(sheet, values))
