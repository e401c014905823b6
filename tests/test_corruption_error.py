"""`report --baseline`: CE, relative CE and mCE (Hendrycks & Dietterich 2019) on hand-made runs whose errors
are chosen so that every number has a closed form."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from shapeshift import reporting as rp
from shapeshift.report import main as report_main
from shapeshift.runs.metric_keys import GEOMETRIC, HELD_OUT, IMAGENET_C, mce_key
from tests.helpers import ROOT

CATALOG = (*IMAGENET_C, *HELD_OUT, *GEOMETRIC)
ZERO_FOR_BASELINE = "brightness"  # the baseline makes no error here: CE undefined
FLAT_FOR_BASELINE = "saturate"  # the baseline's error equals its clean error: relative CE undefined


def weight(family: str) -> int:
    return 1 + CATALOG.index(family) % 3


def errors(clean: float, slope: float, family: str, baseline: bool) -> list[float]:
    """Error at severity k = clean + slope * k * weight(family), with the two baseline exceptions."""
    if baseline and family == ZERO_FOR_BASELINE:
        return [0.0] * 5
    if baseline and family == FLAT_FOR_BASELINE:
        return [clean] * 5
    return [clean + slope * k * weight(family) for k in range(1, 6)]


def make_run(
    root: Path, arch: str, aug: str, seed: int, clean: float, slope: float, families=CATALOG
) -> Path:
    run = root / f"arch={arch},aug={aug},seed={seed}"
    (run / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "aug": {"name": aug}, "shift": {"families": {f: [] for f in families}}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    choices = {"hydra": {"runtime": {"choices": {"arch": arch, "aug": aug, "data": "folder"}}}}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(choices))
    metrics = {"arch": arch, "aug": aug, "seed": seed, "test/iid/acc": 1 - clean}
    for family in families:
        for k, e in enumerate(errors(clean, slope, family, baseline=arch == "cnn"), start=1):
            metrics[f"test/{family}/s{k}/acc"] = 1 - e
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


@pytest.fixture
def sweep(tmp_path) -> Path:
    """Baseline cnn x none, 2 seeds (clean error 0.10 and 0.20, slope 0.02); gap x none, 2 seeds (clean
    0.05 and 0.15, slope 0.01): every relative CE is (0.15 w) / (0.30 w) = 0.5."""
    root = tmp_path / "sweep"
    for seed, clean in enumerate((0.10, 0.20)):
        make_run(root, "cnn", "none", seed, clean, 0.02)
    for seed, clean in enumerate((0.05, 0.15)):
        make_run(root, "gap", "none", seed, clean, 0.01)
    return root


def expected_ce(family: str, model_clean: float) -> float:
    """sum_s E_model / mean over the baseline's seeds of sum_s E_base."""
    w = weight(family)
    if family == FLAT_FOR_BASELINE:
        return (5 * model_clean + 0.15 * w) / (5 * 0.15)
    return (5 * model_clean + 0.15 * w) / (5 * 0.15 + 0.30 * w)


def test_ce_relative_ce_and_mce_have_their_closed_forms(sweep):
    result = rp.report([sweep], baseline="arch=cnn", plots=False)
    base = result["baseline"]
    assert base.selector == {"arch": "cnn", "aug": "none"} and len(base.runs) == 2
    assert base.undefined == {
        "ce": [ZERO_FOR_BASELINE],
        "relative_ce": [ZERO_FOR_BASELINE, FLAT_FOR_BASELINE],
    }
    gap = {r.seed: r.metrics for r in result["runs"] if r.arch == "gap"}
    for seed, clean in ((0, 0.05), (1, 0.15)):
        m = gap[seed]
        assert "test/brightness/ce" not in m and "test/saturate/relative_ce" not in m
        for family in CATALOG:
            if family != ZERO_FOR_BASELINE:
                assert m[f"test/{family}/ce"] == pytest.approx(expected_ce(family, clean), abs=1e-12)
            if family not in (ZERO_FOR_BASELINE, FLAT_FOR_BASELINE):
                assert m[f"test/{family}/relative_ce"] == pytest.approx(0.5, abs=1e-12)
        scored = [f for f in IMAGENET_C if f != ZERO_FOR_BASELINE]  # mCE over 14: brightness has no CE
        assert m[mce_key()] == pytest.approx(sum(expected_ce(f, clean) for f in scored) / 14, abs=1e-12)
        assert m[mce_key(relative=True)] == pytest.approx(0.5, abs=1e-12)
        held = sum(expected_ce(f, clean) for f in HELD_OUT) / 4
        assert m[mce_key("held_out")] == pytest.approx(held, abs=1e-12)
        assert m[mce_key("held_out", relative=True)] == pytest.approx(0.5, abs=1e-12)  # over 3: saturate out
        geometric = sum(expected_ce(f, clean) for f in GEOMETRIC) / 5
        assert m[mce_key("geometric")] == pytest.approx(geometric, abs=1e-12)
    # The baseline against its own mean: 1 exactly on average over its seeds, its seeds' spread around it.
    groups = {(g.arch, g.aug): g for g in result["groups"]}
    for key in (mce_key(), mce_key(relative=True), mce_key("geometric")):
        assert groups["cnn", "none"].stats[key].mean == pytest.approx(1.0, abs=1e-12)
    assert groups["cnn", "none"].stats["test/fog/ce"].half > 0
    gap_mce = groups["gap", "none"].stats[mce_key()]
    assert gap_mce.mean == pytest.approx((gap[0][mce_key()] + gap[1][mce_key()]) / 2, abs=1e-12)


def test_report_md_and_csv_carry_the_corruption_error(sweep):
    assert report_main([str(sweep), "--baseline", "arch=cnn", "--no-plots"]) == 0
    text = (sweep / "report.md").read_text()
    assert "## Corruption error (Hendrycks & Dietterich 2019)" in text
    assert "Baseline: `arch=cnn aug=none`, 2 runs" in text
    assert "`brightness`: the baseline's error there is zero" in text
    assert "`brightness`, `saturate`: the baseline's error there does not rise" in text
    row = next(line for line in text.splitlines() if line.startswith("| gap | none | 2 | 0.100 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5].startswith("0.500 ± 0.000")  # relative mCE
    assert "| cnn | none | 2 | 0.150 | 1.000 ± " in text
    rows = list(csv.DictReader((sweep / "results.csv").open()))
    gap0 = next(r for r in rows if r["arch"] == "gap" and r["seed"] == "0")
    assert float(gap0["test/fog/ce"]) == pytest.approx(expected_ce("fog", 0.05))
    assert float(gap0["test/relative_mce"]) == pytest.approx(0.5)
    assert "test/fog/ce" not in text.split("## Other test metrics")[-1].split("##")[0]  # its own table only


def test_without_a_baseline_the_report_says_how_to_get_mce(sweep):
    rp.report([sweep], plots=False)
    text = (sweep / "report.md").read_text()
    assert "`--baseline arch=<arch>` adds CE and mCE" in text
    assert "test/mce" not in (sweep / "results.csv").read_text()


def test_a_catalog_without_every_imagenet_c_family_gets_no_mce(tmp_path):
    partial = [f for f in CATALOG if f != "fog"]
    for arch in ("cnn", "gap"):
        make_run(tmp_path, arch, "none", 0, 0.1, 0.02, families=partial)
    result = rp.report([tmp_path], baseline="arch=cnn", plots=False)
    gap = next(r for r in result["runs"] if r.arch == "gap").metrics
    assert mce_key() not in gap and mce_key(relative=True) not in gap
    assert mce_key("geometric") in gap and "test/frost/ce" in gap
    assert result["baseline"].incomplete == {"imagenet_c": ["fog"]}
    assert "no imagenet_c mean: the runs lack `fog`" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("aug=none", "matches 2 cells (cnn x none, gap x none): name one more key"),
        ("arch=resnet18", "no compared run matches (cells: cnn none, gap none)"),
        ("arch", "--baseline wants key=value[,key=value]"),
    ],
)
def test_a_baseline_that_picks_no_single_cell_is_a_one_line_error(sweep, capsys, selector, message):
    assert report_main([str(sweep), "--baseline", selector, "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_shift_catalog_yaml_holds_exactly_the_groups_mce_is_made_of():
    families = yaml.safe_load((ROOT / "conf" / "shift" / "corruptions.yaml").read_text())["families"]
    assert tuple(families) == CATALOG
    assert len(IMAGENET_C) == 15 and len(HELD_OUT) == 4


def test_the_ce_heatmap_is_drawn_with_a_baseline_only(sweep):
    from shapeshift.reporting.plots import CE_PLOT

    rp.report([sweep], plots=True)
    assert not (sweep / CE_PLOT).exists()
    result = rp.report([sweep], baseline="arch=cnn", plots=True)
    assert (sweep / CE_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["plots"]["Corruption error per family against the baseline"] == CE_PLOT


def test_the_mce_change_of_an_augmentation_is_paired_by_seed(sweep):
    """gap x basic at the same clean errors as gap x none, with slopes 0.005 and 0 for seeds 0 and 1: each
    seed's mCE falls by the mean over the scored families of 15 (0.01 - slope) w / the baseline's sum."""
    for seed, (clean, slope) in enumerate(((0.05, 0.005), (0.15, 0.0))):
        make_run(sweep, "gap", "basic", seed, clean, slope)
    assert report_main([str(sweep), "--baseline", "arch=cnn", "--no-plots"]) == 0
    scored = [f for f in IMAGENET_C if f != ZERO_FOR_BASELINE]

    def fall(slope: float) -> float:
        base = {f: 5 * 0.15 + (0 if f == FLAT_FOR_BASELINE else 0.30 * weight(f)) for f in scored}
        return sum(15 * (0.01 - slope) * weight(f) / base[f] for f in scored) / len(scored)

    diffs = [-fall(0.005), -fall(0.0)]
    text = (sweep / "report.md").read_text().split("Change of mCE against `none`")[1]
    row = next(line for line in text.splitlines() if line.startswith("| gap | basic |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[2]) == pytest.approx(sum(diffs) / 2, abs=5e-4)
    assert cells[3].startswith(f"{sum(diffs) / 2:.3f} ± ") and cells[4] == "2"
    assert "| basic | gap | 2 of 2 | 0.500 | 0.500 |" in text  # both seeds fell: a two-sided sign test
