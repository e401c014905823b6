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
import math
import re
import shlex
import statistics

import pytest
import yaml
from scipy import stats as scipy_stats

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
    try:
        return f"{float(value):.3f}"
    except ValueError:  # a choice recorded by name (qc/gate)
        return f"`{value}`"


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
    if spec.get("check"):
        pytest.skip(f"checked by its own test ({spec['check']})")
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


# -- the commands that remake each table ---------------------------------------------------------------------
RUNS_FROM = re.compile(r"^Runs from (.*?): \d+ found", re.M)
PLACEHOLDER = re.compile(r"<[^>!]*>")


def report_roots(folder: str) -> list[str]:
    """The folders a report in docs/ was made from, as its "Runs from" line names them."""
    (line,) = RUNS_FROM.findall((DOCS / folder / "report.md").read_text())
    return re.findall(r"`([^`]+)`", line)


def parse_report_command(command: str) -> tuple[list[str], dict[str, str | bool]]:
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "shapeshift.report"], command
    roots, options, i = [], {}, 3
    while i < len(words):
        if words[i] == "--no-plots":
            options["--no-plots"], i = True, i + 1
        elif words[i].startswith("--"):
            options[words[i]], i = words[i + 1], i + 2
        else:
            roots.append(words[i])
            i += 1
    return roots, options


def test_every_table_names_the_exact_command_that_remakes_it():
    """`remake:` in each table's comment: the report command with the folders its report was made from,
    the report's own --min-iid and --baseline, written to the folder the table is copied from."""
    for start, spec, _, _ in page_tables():
        assert spec and spec.get("remake"), f"line {start}: no `remake:` command above the table"
        commands = spec["remake"] if isinstance(spec["remake"], list) else [spec["remake"]]
        made = {}
        for command in commands:
            assert not PLACEHOLDER.search(command), f"line {start}: a placeholder in {command}"
            roots, options = parse_report_command(command)
            made[options["--out"].removeprefix("docs/")] = (roots, options)
        for folder in {path.rsplit("/", 1)[0] for path in spec["files"]}:
            assert folder in made, f"line {start}: no command writes docs/{folder}"
            roots, options = made[folder]
            report = (DOCS / folder / "report.md").read_text()
            made_from = [options["--from-csv"]] if "--from-csv" in options else roots
            assert made_from == report_roots(folder), f"line {start}: not what docs/{folder} was made from"
            if "--from-csv" in options:  # remade from the kept CSV: the catalog comes with it
                assert (ROOT / options["--from-csv"]).is_file() and (ROOT / options["--shift"]).is_file()
            left_out = re.search(r"i\.i\.d\. accuracy [0-9.]+ < ([0-9.]+)", report)
            assert options.get("--min-iid") == (left_out.group(1) if left_out else None), f"line {start}"
            assert ("--baseline" in options) == ("Baseline: `" in report), f"line {start}"


def test_no_command_on_the_page_has_a_placeholder():
    """Every `python -m shapeshift...` on the page, inline or in a block, can be run as written."""
    text = PAGE.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    inline = re.findall(r"`(python -m shapeshift[^`]*)`", text)
    commands = [c for b in blocks for c in b.replace("\\\n", " ").splitlines() if c.strip()] + inline
    assert len(commands) > 20
    bad = [c for c in commands if PLACEHOLDER.search(c.split("#")[0])]
    assert not bad, f"commands with placeholders: {bad}"


# -- the numbers the prose quotes, recomputed from the runs' CSVs --------------------------------------------
def runs(path: str, compared: bool = True) -> list[dict]:
    with open(DOCS / path, newline="") as f:
        return [r for r in csv.DictReader(f) if not (compared and r["left_out"])]


STUDY = "study/results.csv"
ARCHS = ("cnn", "maxpool", "gap", "resnet18", "resnet18_aa")
QUADRANT_READERS = ("cnn", "maxpool", "resnet18", "resnet18_aa")
KEY = {
    "position": "test/position/acc",
    "s5": "test/position/s5/acc",
    "ood": "test/ood/acc",
    "mix": "test/mix/acc",
}


def by_seed(rows, arch: str, aug: str, key: str, variant: str = "") -> dict[int, float]:
    return {
        int(r["seed"]): float(r[key])
        for r in rows
        if (r["arch"], r["aug"], r["variant"]) == (arch, aug, variant)
    }


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def signed(values) -> str:
    return " / ".join(f"{v:+.3f}" for v in values)


def plain(values) -> str:
    return " / ".join(f"{v:.3f}" for v in values)


def p2(p: float) -> str:
    return f"{p:#.2g}"


def paired(a: dict, b: dict) -> tuple[list[float], float | None]:
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    p = scipy_stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue if len(seeds) > 1 else None
    return diffs, p


def half_width(values) -> float:
    n = len(values)
    return scipy_stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n)


def holm(ps: list[float]) -> list[float]:
    order = sorted(range(len(ps)), key=ps.__getitem__)
    out, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


def span(values, digits: int = 3) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def family_mean_without(r: dict, family: str) -> float:
    keys = [k for k in r if re.fullmatch(r"test/[^/]+/s\d/acc", k) and not k.startswith(f"test/{family}/")]
    return mean(float(r[k]) for k in keys)


def claim3_quotes() -> list[str]:
    """Anti-aliased minus plain ResNet-18, paired by seed, Holm over the comparisons that have a p-value."""
    s = runs(STUDY)
    tests = {}
    for aug in ("none", "basic", "strong"):
        for metric in ("position", "s5", "ood"):
            tests[aug, metric] = paired(
                by_seed(s, "resnet18_aa", aug, KEY[metric]), by_seed(s, "resnet18", aug, KEY[metric])
            )
    with_p = [k for k, (_, p) in tests.items() if p is not None and not math.isnan(p)]
    adjusted = dict(zip(with_p, holm([tests[k][1] for k in with_p]), strict=True))
    assert len(with_p) == 8
    d, p = tests["none", "position"]
    quotes = [f"Holm over the {len(with_p)} that have a p-value", f"({signed(d)}, p = {p2(p)})"]
    d, p = tests["basic", "position"]
    quotes.append(
        f"by {d[0]:+.3f} and {d[1]:+.3f} in the two seeds both cells have (p = {p2(p)} with 2 pairs, "
    )
    quotes.append(f"{p2(adjusted['basic', 'position'])} after Holm): a lead")
    d, p = tests["strong", "position"]
    quotes.append(f"With `strong` level ({signed(d)}, p = {p2(p)})")
    d, p = tests["strong", "ood"]
    assert all(x < 0 for x in d)
    quotes.append(
        f"behind in 3 of 3 seeds ({signed(d)}, p = {p2(p)}, {p2(adjusted['strong', 'ood'])} after Holm)"
    )
    d, _ = paired(
        by_seed(s, "resnet18_aa", "strong", KEY["mix"]), by_seed(s, "resnet18", "strong", KEY["mix"])
    )
    quotes.append(f"on `mix` too ({signed(d)})")
    d, p = tests["none", "ood"]
    quotes.append(f"with `none` ({mean(d):+.3f} ± {half_width(d):.3f} paired, p = {p2(p)})")
    d2, p = tests["basic", "ood"]
    quotes.append(f"`basic` ({signed(d2)}, p = {p2(p)})")
    quotes.append(f"behind in {sum(x < 0 for x in d + d2)} of those {len(d + d2)} pairs")
    a, b = by_seed(s, "resnet18_aa", "strong", KEY["s5"]), by_seed(s, "resnet18", "strong", KEY["s5"])
    quotes.append(f"lower in seed 2 ({a[2]:.3f} vs {b[2]:.3f})")
    mix = {arch: mean(by_seed(s, arch, "none", KEY["mix"]).values()) for arch in ARCHS}
    rank = sorted(mix, key=mix.get, reverse=True).index("resnet18_aa") + 1
    quotes.append(f"the anti-aliased ResNet-18 is {rank}th of 5 on the mix without augmentation")
    return quotes


def claim5_quotes() -> list[str]:
    """The o.o.d. gain over `none` without the position family, and the size of the gain."""
    s = runs(STUDY)
    gains, ups, pairs = {}, 0, 0
    for aug in ("basic", "strong"):
        for arch in ARCHS:
            base = {
                int(r["seed"]): family_mean_without(r, "position")
                for r in s
                if (r["arch"], r["aug"], r["variant"]) == (arch, "none", "")
            }
            other = {
                int(r["seed"]): family_mean_without(r, "position")
                for r in s
                if (r["arch"], r["aug"], r["variant"]) == (arch, aug, "")
            }
            if not other:
                continue
            gains[arch, aug] = mean(other.values()) - mean(base.values())
            if aug == "strong":
                d, _ = paired(other, base)
                ups, pairs = ups + sum(x > 0 for x in d), pairs + len(d)
    strong = [gains[a, "strong"] for a in QUADRANT_READERS]
    basic = [v for (a, aug), v in gains.items() if aug == "basic"]
    sign_p = scipy_stats.binomtest(ups, pairs).pvalue
    ood_gain = [
        mean(by_seed(s, a, "strong", KEY["ood"]).values()) - mean(by_seed(s, a, "none", KEY["ood"]).values())
        for a in QUADRANT_READERS
    ]
    none_ood = [mean(by_seed(s, a, "none", KEY["ood"]).values()) for a in QUADRANT_READERS]
    gap_ood = mean(by_seed(s, "gap", "none", KEY["ood"]).values())
    names = ("strided CNN", "max-pooling", "ResNet-18", "anti-aliased")
    listed = ", ".join(f"{g:+.3f} ({n})" for g, n in zip(strong[:3], names[:3], strict=True))
    return [
        f"gains are {listed} and {strong[3]:+.3f} ({names[3]}), up in {ups} of the {pairs} seed pairs "
        f"(sign test p = {p2(sign_p)}), and `basic`'s {min(basic):+.3f} to {max(basic):+.3f}",
        f"the gains are {min(strong):+.3f} to {max(strong):+.3f} (claim 5)",
        f"`strong` adds {min(ood_gain):+.3f} to {max(ood_gain):+.3f}",
        f"The o.o.d. mean starts at {span(none_ood)}",
        f"`none` {span(none_ood)}, the GAP CNN {gap_ood:.3f}) and the largest gain {max(ood_gain):+.3f}",
    ]


def rerun_quotes() -> list[str]:
    """What moved when the augmented cells were rerun with per-sample seeding, and that nothing else did."""
    before, now = runs("study/before-per-sample-seeding/results.csv"), runs(STUDY)
    named = {
        ("resnet18", "strong", "s5"),
        ("resnet18", "strong", "position"),
        ("resnet18_aa", "basic", "s5"),
        ("resnet18_aa", "basic", "position"),
        ("resnet18_aa", "strong", "s5"),
        ("resnet18", "basic", "position"),
        ("gap", "strong", "ood"),
        ("gap", "strong", "mix"),
        ("maxpool", "strong", "position"),
    }
    moves = {}
    for arch in ARCHS:
        for aug in ("basic", "strong"):
            variant = "max_epochs=20" if (arch, aug) == ("gap", "strong") else ""
            for metric, key in KEY.items():
                b = mean(by_seed(before, arch, aug, key, variant).values())
                n = mean(by_seed(now, arch, aug, key, variant).values())
                moves[arch, aug, metric] = (b, n)
    others = [abs(n - b) for k, (b, n) in moves.items() if k not in named]
    assert max(others) <= 0.020 + 1e-9, "a mean the page says moved by 0.020 or less moved more"
    quotes = ["moves by 0.020 or less"]
    for k in (("gap", "strong", "ood"), ("gap", "strong", "mix"), ("maxpool", "strong", "position")):
        b, n = moves[k]
        quotes.append(f"{b:.3f} -> {n:.3f}")
    return quotes


def range_quotes() -> list[str]:
    s = runs(STUDY)
    none = [r for r in s if r["aug"] == "none"]
    in_quadrant = [
        float(r[f"test/{f}/acc"])
        for r in none
        if r["arch"] in QUADRANT_READERS
        for f in ("scale", "rotation", "combined")
    ]
    remedy = [
        r for r in runs("why/remedy/results.csv") if r["aug"] == "none" and r["arch"] in QUADRANT_READERS
    ]
    remedy_families = [
        float(r[f"test/{f}/acc"]) for r in remedy for f in ("scale", "rotation", "shear", "combined")
    ]
    gap = [r for r in none if r["arch"] == "gap"]
    five_epoch = [r for r in s if r["variant"] == ""]

    def s5(family, archs):
        return [float(r[f"test/{family}/s5/acc"]) for r in five_epoch if r["arch"] in archs]

    mix_compared = [float(r[KEY["mix"]]) for r in s if r["arch"] == "resnet18"]
    aa_photo = [float(r["test/background_photo/s5/acc"]) for r in none if r["arch"] == "resnet18_aa"]
    return [
        f"stay at {span(in_quadrant)} (family means, every `none` run)",
        f"distortions at {span(remedy_families)} (family means of scale, rotation, shear and combined",
        "family means with `none`: scale {}, rotation {}, combined {}".format(
            *(span([float(r[f"test/{f}/acc"]) for r in gap]) for f in ("scale", "rotation", "combined"))
        ),
        f"lowest compared run {min(mix_compared):.3f}",
        f"every model but the GAP CNN keeps {span(s5('background_pattern', QUADRANT_READERS))}, the GAP CNN "
        f"{span(s5('background_pattern', ('gap',)))}",
        f"({span(s5('background_photo', ('gap',)))} in all six `none`/`basic` runs)",
        f"the others keep {span(s5('background_photo', QUADRANT_READERS))}",
        f"lowest with `none`, {span(aa_photo)})",
        f"every compared run is at {span(s5('contrast', ARCHS))}",
    ]


def size128_quotes() -> list[str]:
    z = runs("why/size128/results.csv")
    big, small = ({int(r["seed"]): r for r in z if r["variant"] == f"image_size={n}"} for n in (128, 64))

    def change(key):
        return [float(big[s][key]) - float(small[s][key]) for s in (0, 1, 2)]

    def seeds(runs_by_seed, key):
        return [float(runs_by_seed[s][key]) for s in (0, 1, 2)]

    position_p = scipy_stats.ttest_rel(seeds(big, KEY["position"]), seeds(small, KEY["position"])).pvalue

    return [
        f"on the family mean ({signed(change('test/background_photo/acc'))})",
        f"(s5: {signed(change('test/background_photo/s5/acc'))})",
        f"{signed(change(KEY['position']))}, paired t p = {p2(position_p)}",
    ]


def claim1_quotes() -> list[str]:
    every = runs(STUDY, compared=False)
    quotes = []
    for aug in ("basic", "strong"):
        plain_net = by_seed(every, "resnet18", aug, KEY["s5"])
        aa = by_seed(every, "resnet18_aa", aug, KEY["s5"])
        quotes.append(
            f"{plain([plain_net[s] for s in (0, 1, 2)])}, anti-aliased {plain([aa[s] for s in (0, 1, 2)])}"
        )
    return quotes


def qc_quotes() -> list[str]:
    qc = runs("study/qc/results.csv")
    readers = [r for r in qc if float(r[KEY["s5"]]) < 0.5]
    kept = [
        float(r["test/position/s5/failure_auroc/reference"])
        for r in readers
        if (r["arch"], r["aug"]) != ("resnet18", "basic")
    ]
    return [f"{span(kept)} without it)"]


def translate_rerun_quotes() -> list[str]:
    (r,) = runs("why/translate-rerun/results.csv")
    assert (r["arch"], r["aug"], r["seed"], r["precision"]) == ("resnet18", "translate", "0", "32-true")
    return [
        f"one seed: `position s5` {float(r[KEY['s5']]):.3f}, o.o.d. {float(r[KEY['ood']]):.3f}, "
        f"`mix` {float(r[KEY['mix']]):.3f}"
    ]


def report_column(folder: str, column: str) -> dict[tuple[str, str], str]:
    """{(arch, aug): cell} of the first table in a docs/ report that has `column` beside arch and aug."""
    for _, header, rows in tables((DOCS / folder / "report.md").read_text()):
        if header[:2] == ["arch", "aug"] and column in header:
            return {(r[0], r[1]): r[header.index(column)] for r in rows}
    raise AssertionError(f"no table with {column} in docs/{folder}/report.md")


def digits_quotes() -> list[str]:
    """The digits section's verdicts against the report's gain and corruption-error tables and its CSV."""
    gain, holm_p = report_column("study/digits", "gain"), report_column("study/digits", "Holm")
    geometric = report_column("study/digits", "mCE geometric")
    geo = {k: float(v.split(" ± ")[0]) for k, v in geometric.items()}
    text = (DOCS / "study/digits/report.md").read_text()
    ((header, rows),) = [(h, r) for _, h, r in tables(text) if "mCE change" in h]
    by_p = min(rows, key=lambda r: float(r[header.index("p")]))
    gap = [
        float(r["test/iid/acc"])
        for r in runs("study/digits/results.csv", compared=False)
        if r["arch"] == "gap"
    ]
    return [
        f"only the strided CNN's {gain['cnn', 'basic']} reaches {holm_p['cnn', 'basic']} after Holm "
        f"(ResNet-18's {gain['resnet18', 'basic']}: {holm_p['resnet18', 'basic']})",
        f"mCE geometric falls to {span([v for (a, aug), v in geo.items() if aug == 'basic'])} with `basic` "
        f"against {span([v for (a, aug), v in geo.items() if aug == 'none'])} without",
        f"(the lowest, {by_p[0]} x `{by_p[1]}`, p = {by_p[header.index('p')]}, "
        f"{by_p[header.index('Holm')]} after Holm)".replace("resnet18 x", "ResNet-18 x"),
        f"(i.i.d. {span(gap, 2)} in all {len(gap)} runs)",
    ]


def deployment_quotes() -> list[str]:
    """The 2026-12-04 quality-control rerun against its CSV, and against the earlier run it is set beside."""
    now, before = runs("study/deployment/results.csv"), runs("study/qc/results.csv", compared=False)
    s5 = "test/position/s5/"
    readers = [r for r in now if float(r[s5 + "acc"]) < 0.5]
    earlier = [r for r in before if float(r[s5 + "acc"]) < 0.5]
    assert len(readers) == len(earlier) == 10
    (agreement,) = {f"{float(r[s5 + 'acc_estimate/agreement']):.3f}" for r in readers}
    said = [float(r[s5 + "acc_estimate/" + e]) for r in readers for e in ("atc", "doc")]
    mae = {e: [float(r[f"test/acc_estimate_mae/{e}"]) for r in now] for e in ("atc", "agreement", "doc")}
    best = [min(mae, key=lambda e, i=i: mae[e][i]) for i in range(len(now))]
    within = sum(min(m[i] for m in mae.values()) <= 0.05 for i in range(len(now)))
    cut = [float(r["test/iid/coverage"]) for r in earlier if (r["arch"], r["aug"]) != ("resnet18", "basic")]
    (left_out,) = [r["test/iid/coverage"] for r in earlier if (r["arch"], r["aug"]) == ("resnet18", "basic")]
    (msp,) = [r for r in readers if float(r[s5 + "coverage"]) > 0]
    kept = [r for r in readers if r is not msp]
    assert all(float(r[s5 + "coverage"]) == 0 and float(r["test/iid/coverage"]) == 1 for r in kept)
    return [
        f"against {span(cut)} with the 95% cut in the table above, {float(left_out):.3f} for its left-out",
        f"chose `msp` and accepts {float(msp[s5 + 'coverage']):.3f} of its swapped errors",
        f"swap: {agreement} on `position/s5` for every quadrant reader",
        "where it said {} before and ATC and DoC still say {}".format(
            span([float(r[s5 + "acc_estimate/agreement"]) for r in earlier]), span(said)
        ),
        "`agreement`'s MAE rose to {} ({} before)".format(
            span(mae["agreement"]), span([float(r["test/acc_estimate_mae/agreement"]) for r in before])
        ),
        f"DoC has the lowest MAE in {best.count('doc')} of {len(now)} runs ({span(mae['doc'])}, mean "
        f"{mean(mae['doc']):.3f}; ATC {span(mae['atc'])}, mean {mean(mae['atc']):.3f}), and at most 0.05 in "
        f"{'one run' if within == 1 else f'{within} runs'}",
    ]


def deployment_gate_quotes() -> list[str]:
    """The gate chosen under the declared flips, against its CSV and the run before it."""
    now = {(r["arch"], r["aug"]): r for r in runs("study/deployment-gate/results.csv")}
    before = {(r["arch"], r["aug"]): r for r in runs("study/deployment/results.csv")}
    s5 = "test/position/s5/"

    def v(rows, cell, key):
        return f"{float(rows[cell][key]):.3f}"

    readers = [c for c, r in now.items() if float(r[s5 + "acc"]) == 0.0]
    assert all(now[c]["qc/gate"] == "reference" and float(now[c][s5 + "coverage"]) == 0.0 for c in readers)
    gap, gap_basic, res = ("gap", "none"), ("gap", "basic"), ("resnet18", "strong")
    assert now[gap_basic]["qc/gate"] == "msp"
    return [
        f"`none` keeps {v(now, gap, s5 + 'coverage')} of `position/s5` (all right)",
        f"`basic` {v(now, gap_basic, s5 + 'coverage')} (`msp`), ResNet-18 x `strong` "
        f"{v(now, res, s5 + 'coverage')}",
        f"({len(readers)} runs, accuracy 0.000 on `position/s5`)",
        f"(it accepted {v(before, ('cnn', 'strong'), s5 + 'coverage')} of them with `msp`)",
        f"accepts {v(now, gap, 'test/mix/coverage')} of it at an accepted accuracy of "
        f"{v(now, gap, 'test/mix/accepted_acc')} (its novelty gate accepted "
        f"{v(before, gap, 'test/mix/coverage')} at {v(before, gap, 'test/mix/accepted_acc')})",
        f"`strong` {v(now, res, 'test/mix/coverage')} at {v(now, res, 'test/mix/accepted_acc')} "
        f"({v(before, res, 'test/mix/coverage')} at {v(before, res, 'test/mix/accepted_acc')} before)",
    ]


def estimates_quotes() -> list[str]:
    """The five estimators side by side (2026-12-07), against their CSV."""
    now = runs("study/deployment-estimates/results.csv")
    s5 = "test/position/s5/"
    mae = {e: [float(r[f"test/acc_estimate_mae/{e}"]) for r in now] for e in ESTIMATORS}
    assert all(min(ESTIMATORS, key=lambda e, i=i: mae[e][i]) == "bounded" for i in range(len(now)))
    assert mae["atc_ne"] == mae["atc"]  # two classes: the entropy orders the images as the top probability
    over = [r for r in now if float(r[BOUNDED_MAE]) > 0.05]
    readers = [r for r in now if float(r[s5 + "acc"]) < 0.5]
    assert len(readers) == 10 and {r[s5 + "acc_estimate/atc"] for r in readers} == {"1.0"}
    kept = [r for r in now if float(r[s5 + "coverage"]) > 0]
    assert all(float(r[s5 + "accepted_acc"]) == 1.0 for r in kept)
    kept_right = [f"{float(r[s5 + 'coverage']):.3f}" for r in now if float(r[s5 + "acc"]) >= 0.5]
    assert all(r[s5 + "coverage"] == r[s5 + "acc"] for r in now if r["qc/gate"] == "reference")
    named = {"cnn": "the strided CNN", "maxpool": "the max-pooling CNN", "gap": "the GAP CNN"}

    def by(e):
        return f"{span(mae[e])} (mean {mean(mae[e]):.3f})"

    return [
        f"`bounded` has the lowest MAE in every run: {by('bounded')}, at most 0.05 in "
        f"{sum(v <= 0.05 for v in mae['bounded'])} of {len(now)} runs; the other three are "
        + ", ".join(
            f"{named[r['arch']]} x `{r['aug']}` ({float(r['test/acc_estimate_mae/bounded']):.3f})"
            for r in over
        ),
        f"DoC, the best of the model's own scores, has {by('doc')}, ATC {by('atc')}, `agreement` "
        f"{by('agreement')}",
        f"not met, by at most {max(mae['bounded']) - 0.05:.3f}",
        f"ATC says 1.000 for all ten, where their accuracy is {span([float(r[s5 + 'acc']) for r in readers])}"
        "; "
        f"`bounded` says {span([float(r[s5 + 'acc_estimate/bounded']) for r in readers])}",
        "the GAP CNNs {}, {} (its `msp` gate turns away 8% of them) and {}, ResNet-18 x `strong` {} and the "
        "anti-aliased one {}".format(*kept_right),
    ]


ESTIMATORS = ("atc", "atc_ne", "doc", "agreement", "bounded")
BOUNDED_MAE = "test/acc_estimate_mae/bounded"


PROSE = {
    "claim 3": claim3_quotes,
    "claim 5": claim5_quotes,
    "rerun": rerun_quotes,
    "ranges": range_quotes,
    "size 128": size128_quotes,
    "claim 1": claim1_quotes,
    "quality control": qc_quotes,
    "translate rerun": translate_rerun_quotes,
    "digits": digits_quotes,
    "deployment": deployment_quotes,
    "deployment gate": deployment_gate_quotes,
    "estimates": estimates_quotes,
}


@pytest.mark.parametrize("name", PROSE)
def test_the_numbers_in_the_prose_are_their_data(name):
    """Each quote is built from the runs' CSVs in docs/; it must stand on the page word for word."""
    page = re.sub(r"\s+", " ", PAGE.read_text())
    missing = [q for q in PROSE[name]() if re.sub(r"\s+", " ", q) not in page]
    assert not missing, f"{name}: the page does not say {missing}"


def test_the_blog_table_holds_its_numbers_and_its_rules():
    """The blog-vs-reproduction table: numbers from the study's CSV and report, verdicts from stated rules."""
    ((start, spec, header, rows),) = [t for t in page_tables() if t[1] and t[1].get("check") == "blog"]
    s = runs(STUDY)
    report_mix = {}
    for _, src_header, src_rows in tables((DOCS / "study/report.md").read_text()):
        if src_header[:2] == ["arch", "aug"] and "mix" in src_header:
            report_mix.update({(r[0], r[1]): r[src_header.index("mix")] for r in src_rows})
            break
    mix = {a: by_seed(s, a, "none", KEY["mix"]) for a in ARCHS}
    assert [r[0] for r in rows] == list(ARCHS)
    for row in rows:
        cells = dict(zip(header, row, strict=True))
        arch = cells["arch"]
        s5 = by_seed(s, arch, "none", KEY["s5"])
        assert cells["here: position s5, seeds 0 / 1 / 2"] == plain([s5[k] for k in (0, 1, 2)])
        claim = cells["the post: position swap"]
        holds = all(v < 0.5 for v in s5.values()) if claim == "fails" else all(v >= 0.9 for v in s5.values())
        assert cells["position"] == ("agree" if holds else "disagree"), arch
        assert cells["here: mix"] == report_mix[arch, "none"]
        values = list(mix[arch].values())
        claim = cells["the post: distortion mix"]
        if claim.startswith("tolerant"):
            holds = mean(values) >= 0.85
        elif claim == "ahead of ResNet-18":
            holds = all(mix[arch][k] > mix["resnet18"][k] for k in mix[arch])
        elif claim == "a random guesser":
            holds = mean(values) - half_width(values) <= 0.5
        else:
            assert claim == "the strongest of the five"
            holds = mean(values) == max(mean(m.values()) for m in mix.values())
        assert cells["mix"] == ("agree" if holds else "disagree"), arch
