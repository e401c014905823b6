"""docs/results.md against its data: every table on the page is recomputed from the files in docs/ it
names, so a number on the page cannot drift from the runs it reports.

Each table is preceded by a comment naming its source, relative to docs/:
    <!-- table from: study/report.md why/mechanism/report.md -->
every row must then equal a row of a table in one of those reports, on the page table's columns (same
header names); or a CSV with a mapping from the page's headers to its columns:
    <!-- table from: study/qc/results.csv
    key: [arch, aug]
    columns: {s5 acc: test/position/s5/acc, "msp / reference": [test/x/msp, test/x/reference]} -->
where each value is printed with 3 decimals ("—" when missing) and a list is joined with " / ".
"""

import csv
import re

import pytest
import yaml

from tests.helpers import ROOT

DOCS = ROOT / "docs"
PAGE = DOCS / "results.md"
SOURCE = re.compile(r"<!--\s*table from:(.*?)-->", re.S)


def split_row(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def tables(text: str) -> list[tuple[int, list[str], list[list[str]]]]:
    """(line number, header, rows) of every markdown table in `text`."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and set(lines[i + 1]) <= set("|-: "):
            header, rows, j = split_row(lines[i]), [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append(split_row(lines[j]))
                j += 1
            out.append((i + 1, header, rows))
            i = j
        else:
            i += 1
    return out


def page_tables() -> list[tuple[int, dict | None, list[str], list[list[str]]]]:
    """Each table of the page with the source comment just above it (None when there is none)."""
    text = PAGE.read_text()
    lines = text.splitlines()
    out = []
    for start, header, rows in tables(text):
        above = "\n".join(lines[: start - 1]).rstrip()
        match = None
        for m in SOURCE.finditer(above):
            match = m
        spec = None
        if match and above[match.end() :].strip() == "":
            body = match.group(1).strip()
            first, _, rest = body.partition("\n")
            spec = {"files": first.split(), **(yaml.safe_load(rest) or {})}
        out.append((start, spec, header, rows))
    return out


def fmt(value: str | None) -> str:
    if value in (None, ""):
        return "—"
    return f"{float(value):.3f}"


def expected_from_csv(spec: dict, header: list[str], row: list[str]) -> list[str]:
    (path,) = spec["files"]
    with open(DOCS / path, newline="") as f:
        records = list(csv.DictReader(f))
    cells = dict(zip(header, row, strict=True))
    matches = [r for r in records if all(r[k] == cells[k] for k in spec["key"])]
    assert len(matches) == 1, f"{path}: {len(matches)} rows for {[cells[k] for k in spec['key']]}"
    (record,) = matches
    out = []
    for h in header:
        if h in spec["key"]:
            out.append(record[h])
            continue
        keys = spec["columns"][h]
        out.append(" / ".join(fmt(record.get(k)) for k in (keys if isinstance(keys, list) else [keys])))
    return out


def matches_a_report_row(spec: dict, header: list[str], row: list[str]) -> bool:
    for path in spec["files"]:
        for _, src_header, src_rows in tables((DOCS / path).read_text()):
            if not set(header) <= set(src_header):
                continue
            index = [src_header.index(h) for h in header]
            if any([src[i] for i in index] == row for src in src_rows):
                return True
    return False


def test_every_table_on_the_page_names_its_source():
    missing = [start for start, spec, _, _ in page_tables() if spec is None]
    assert not missing, f"docs/results.md: tables without a `table from:` comment at lines {missing}"
    for _, spec, _, _ in page_tables():
        for path in spec["files"]:
            assert (DOCS / path).is_file(), path


@pytest.mark.parametrize("table", page_tables(), ids=lambda t: f"line{t[0]}")
def test_every_row_equals_its_source(table):
    start, spec, header, rows = table
    if spec is None:
        pytest.skip("no source (the test above fails)")
    for row in rows:
        if spec["files"][0].endswith(".csv"):
            assert row == expected_from_csv(spec, header, row), f"line {start}: {row}"
        else:
            assert matches_a_report_row(spec, header, row), (
                f"line {start}: no row of {spec['files']} is {row}"
            )


def test_every_picture_in_docs_is_shown_by_a_page():
    pages = [*DOCS.rglob("*.md"), ROOT / "README.md"]
    shown = {
        (p.parent / m).resolve() for p in pages for m in re.findall(r"\]\(([^)]+\.png)\)", p.read_text())
    }
    orphans = sorted(str(p.relative_to(ROOT)) for p in DOCS.rglob("*.png") if p.resolve() not in shown)
    assert not orphans, f"pictures no page shows: {orphans}"
