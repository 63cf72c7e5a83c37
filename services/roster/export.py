"""The classified archives (分类党员群体档案) as CSV and Excel, the way Party offices read them."""

from __future__ import annotations

import csv
import io

from openpyxl import Workbook
from openpyxl.styles import Font

from runtime.spreadsheets import append_row, safe_rows
from services.roster.queries import Archive

LABELS = {
    "standing": {"full": "正式党员", "probationary": "预备党员"},
    "cadre": {"cadre": "学生干部党员", "non_cadre": "非学生干部党员"},
    "graduating": {"graduating": "毕业生党员", "not_graduating": "非毕业生党员"},
    "performance": {"excellent": "优秀党员", "lagging": "相对落后党员", "neither": "—"},
}

HEADER = [
    "党员编号 Member id",
    "学号 Student number",
    "姓名 Name",
    "支部 Branch",
    "党小组 Party group",
    "班级 Class",
    "连队 Company",
    "宿舍 Dormitory",
    "正式/预备 Standing",
    "干部 Cadre",
    "毕业生 Graduating",
    "表现 Performance",
]
COUNT_HEADER = [
    "正式/预备 Standing",
    "干部 Cadre",
    "毕业生 Graduating",
    "表现 Performance",
    "人数 Members",
]


def label(dimension: str, value: str | None) -> str:
    return LABELS[dimension].get(value or "", value or "")


def rows(archive: Archive) -> list[list[str]]:
    return [
        [
            row.member_id,
            row.student_number,
            row.name,
            row.branch_id,
            row.group_id or "",
            row.class_name or "",
            row.company or "",
            row.dormitory or "",
            label("standing", row.categories.standing),
            label("cadre", row.categories.cadre),
            label("graduating", row.categories.graduating),
            label("performance", row.categories.performance),
        ]
        for row in archive.rows
    ]


def to_csv(archive: Archive) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    # Every cell safe: a name like `=HYPERLINK(…)` is text, not a formula (runtime.spreadsheets).
    writer.writerows(safe_rows(rows(archive)))
    # A BOM so that Excel opens the Chinese text as UTF-8.
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(archive: Archive, title: str) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "分类档案"
    append_row(sheet, [f"{title} — 截至 {archive.as_of.isoformat()} (as of)"])
    sheet["A1"].font = Font(bold=True)
    sheet.append(HEADER)
    for cell in sheet[2]:
        cell.font = Font(bold=True)
    for row in rows(archive):
        append_row(sheet, row)
    sheet.freeze_panes = "A3"
    for column, width in zip(
        "ABCDEFGHIJKL", (14, 14, 10, 12, 14, 12, 10, 10, 12, 14, 14, 12), strict=True
    ):
        sheet.column_dimensions[column].width = width
    counts = book.create_sheet("统计 Counts")
    counts.append(COUNT_HEADER)
    for group in archive.groups:
        append_row(
            counts,
            [label(d, group[d]) for d in ("standing", "cadre", "graduating", "performance")]
            + [group["count"]],
        )
    counts.append([])
    counts.append(["合计 Total", "", "", "", len(archive.rows)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
