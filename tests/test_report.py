"""`python -m shapeshift.report`: hand-made runs with known numbers give exactly the expected tables."""

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest
import yaml

from shapeshift import reporting as rp
from shapeshift.report import main as report_main
from shapeshift.runs.provenance import code_commit
from tests.helpers import run_cli

FAMILIES = ("position", "scale")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T975_1, T975_2 = 12.7062047, 4.30265273  # t(0.975, 1) and t(0.975, 2), from a printed table


def metrics_for(arch: str, aug: str, seed: int, iid: float, ood_shift: float = 0.0) -> dict:
    """A metrics.json as train.py writes it; family f at severity k scores iid - 0.05 * k (+ ood_shift)."""
    m = {
        "arch": arch,
        "aug": aug,
        "seed": seed,
        "epochs": 4,
        "val/acc": iid,
        "checkpoint": "checkpoints/last.ckpt",
        "eval/checkpoint": "last",
        "eval/epoch": 3,
        "eval/step": 128,
        "test/iid/acc": iid,
        "test/mix/acc": iid - 0.1,
        "test/iid/ece": 0.01 * (seed + 1),
        "time/data_s": 1.0,
        "time/fit_s": 10.0,
        "time/test_s": 2.0,
    }
    every = []
    for j, family in enumerate(FAMILIES):
        values = [iid - 0.05 * k - 0.1 * j + ood_shift for k in range(1, 6)]
        for k, v in enumerate(values, start=1):
            m[f"test/{family}/s{k}/acc"] = v
        m[f"test/{family}/acc"] = sum(values) / 5
        every += values
    m["test/ood/acc"] = sum(every) / len(every)
    m["test/ood_iid_ratio"] = m["test/ood/acc"] / iid
    return m


def make_run(root: Path, name: str, arch: str, aug: str, seed: int, metrics: dict | None) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    families = {f: [{"position": {"fraction": 0.2 * k}} for k in range(1, 6)] for f in FAMILIES}
    config = {
        "seed": seed,
        "output_dir": "${hydra:runtime.output_dir}",
        "aug": {"name": aug, "transforms": []},
        "shift": {"n_per_class": 100, "families": families},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    hydra = {"hydra": {"runtime": {"choices": {"arch": arch, "aug": aug, "data": "shapes"}}}}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    (run / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([f"arch={arch}", f"aug={aug}", f"seed={seed}"])
    )
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return run


@pytest.fixture
def sweep(tmp_path) -> Path:
    """cnn x {none, basic} x 3 seeds, gap x none x 1 seed, one unfinished and one failed run."""
    root = tmp_path / "sweep"
    job = 0
    for aug, shift in (("none", 0.0), ("basic", 0.05)):
        for seed, iid in zip((0, 1, 2), (0.8, 0.9, 1.0), strict=True):
            make_run(
                root,
                f"{job}_arch=cnn,aug={aug},seed={seed}",
                "cnn",
                aug,
                seed,
                metrics_for("cnn", aug, seed, iid, shift),
            )
            job += 1
    make_run(root, f"{job}_arch=gap,aug=none,seed=0", "gap", "none", 0, metrics_for("gap", "none", 0, 0.7))
    make_run(root, f"{job + 1}_arch=resnet18,aug=none,seed=0", "resnet18", "none", 0, None)
    failed = make_run(root, f"{job + 2}_arch=resnet18,aug=basic,seed=0", "resnet18", "basic", 0, None)
    (failed / "error.txt").write_text("\nRuntimeError: CUDA out of memory\nTraceback ...\n")
    return root


def t_interval(values):
    """The 95% half-width computed by hand: t(0.975, n-1) * sd / sqrt(n)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, {2: T975_1, 3: T975_2}[n] * sd / math.sqrt(n)


def test_t_quantiles_and_intervals():
    assert rp.t_quantile(1) == pytest.approx(T975_1) and rp.t_quantile(2) == pytest.approx(T975_2)
    assert rp.t_quantile(30) == pytest.approx(2.0423, abs=1e-4) and rp.t_quantile(1000) == pytest.approx(
        1.9623, abs=1e-4
    )
    with pytest.raises(ValueError, match="degrees of freedom"):
        rp.t_quantile(0)
    stat = rp.mean_interval([0.8, 0.9, 1.0])
    assert stat.n == 3 and stat.mean == pytest.approx(0.9)
    assert stat.half == pytest.approx(T975_2 * 0.1 / math.sqrt(3))  # sd of 0.8, 0.9, 1.0 is 0.1
    assert stat.cell() == "0.900 ± 0.248"
    one = rp.mean_interval([0.7, None, float("nan")])
    assert (one.n, one.mean, one.half) == (1, 0.7, None) and one.cell() == "0.700 ± —"
    assert rp.mean_interval([]) is None


def test_groups_means_and_intervals_are_exact(sweep):
    runs = rp.collect([sweep])
    assert len(runs) == 9 and sum(r.finished for r in runs) == 7
    groups = rp.summarize(runs)
    assert [(g.arch, g.aug, g.n) for g in groups] == [
        ("cnn", "none", 3),
        ("cnn", "basic", 3),
        ("gap", "none", 1),
    ]
    cnn_none, cnn_basic, gap = groups
    assert cnn_none.seeds == [0, 1, 2]
    for key in (
        "test/iid/acc",
        "test/position/acc",
        "test/position/s5/acc",
        "test/ood/acc",
        "test/mix/acc",
        "test/iid/ece",
    ):
        values = [r.metrics[key] for r in cnn_none.runs]
        mean, half = t_interval(values)
        assert cnn_none.stats[key].mean == pytest.approx(mean), key
        assert cnn_none.stats[key].half == pytest.approx(half), key
    # iid 0.8/0.9/1.0; position = iid - 0.15; s5 = iid - 0.25; ood = iid - 0.2; mix = iid - 0.1.
    assert cnn_none.stats["test/position/acc"].mean == pytest.approx(0.75)
    assert cnn_none.stats["test/ood/acc"].mean == pytest.approx(0.7)
    assert cnn_basic.stats["test/ood/acc"].mean == pytest.approx(0.75)
    assert gap.stats["test/iid/acc"] == rp.Stat(1, 0.7, None)

    header, rows = rp.main_rows(groups)
    assert header == ["arch", "aug", "n", "iid", "position", "position s5", "ood", "mix"]
    h = T975_2 * 0.1 / math.sqrt(3)
    assert rows[0] == [
        "cnn",
        "none",
        "3",
        f"0.900 ± {h:.3f}",
        f"0.750 ± {h:.3f}",
        f"0.650 ± {h:.3f}",
        f"0.700 ± {h:.3f}",
        f"0.800 ± {h:.3f}",
    ]
    assert rows[2] == ["gap", "none", "1", "0.700 ± —", "0.550 ± —", "0.450 ± —", "0.500 ± —", "0.600 ± —"]

    gain = rp.gains(groups)
    assert [(g["arch"], g["aug"]) for g in gain] == [("cnn", "basic")]
    assert gain[0]["gain"] == pytest.approx(0.05)
    assert gain[0]["paired"].n == 3 and gain[0]["paired"].half == pytest.approx(0.0, abs=1e-9)


def test_report_files_tables_csv_and_missing_runs(sweep):
    result = rp.report([sweep])
    text = (sweep / "report.md").read_text()
    h = f"{T975_2 * 0.1 / math.sqrt(3):.3f}"
    assert f"| cnn | none | 3 | 0.900 ± {h} | 0.750 ± {h} | 0.650 ± {h} | 0.700 ± {h} | 0.800 ± {h} |" in text
    assert "| gap | none | 1 | 0.700 ± — | 0.550 ± — | 0.450 ± — | 0.500 ± — | 0.600 ± — |" in text
    assert "9 found, 7 finished, 2 without metrics.json" in text
    # The unfinished and the failed run are listed with who they are and why.
    assert "| resnet18 | none | 0 | no metrics.json (unfinished or failed) |" in text
    assert "| resnet18 | basic | 0 | error.txt: RuntimeError: CUDA out of memory |" in text
    assert "| cnn | basic | +0.050 |" in text  # the gain table
    assert "| basic | cnn | 3 of 3 | 0.250 | 0.250 |" in text  # its sign test: 3 pairs up, p = 2 / 2^3
    assert "iid/ece" in text  # any other test/ metric gets a column

    with (sweep / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7
    columns = list(rows[0])
    assert columns[:9] == [
        "run_dir",
        "arch",
        "variant",
        "aug",
        "seed",
        "data",
        "epochs",
        "commit",
        "precision",
    ]
    assert columns[9:12] == ["eval/checkpoint", "eval/epoch", "eval/step"]  # which weights the row describes
    assert columns[12:15] == ["val/acc", "test/iid/acc", "test/iid/ece"]
    assert (rows[0]["eval/checkpoint"], rows[0]["eval/epoch"]) == ("last", "3")
    assert {"test/position/s3/acc", "test/ood/acc", "test/ood_iid_ratio", "time/fit_s"} <= set(columns)
    first = rows[0]
    assert Path(first["run_dir"]).name == "0_arch=cnn,aug=none,seed=0"
    assert (first["arch"], first["aug"], first["seed"], first["data"]) == ("cnn", "none", "0", "shapes")
    assert float(first["test/iid/acc"]) == 0.8 and float(first["test/position/s5/acc"]) == pytest.approx(0.55)
    assert [Path(r["run_dir"]).name.split("_")[0] for r in rows] == ["0", "1", "2", "3", "4", "5", "6"]

    # Plots: every one drawn, each a real, non-empty PNG, and linked from the report.
    assert set(result["plots"].values()) == {
        "heatmap.png",
        "severity_none.png",
        "severity_basic.png",
        "aug_gain.png",
    }
    for name in result["plots"].values():
        data = (sweep / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
        assert f"]({name})" in text


def test_every_report_names_the_commit_and_precision_of_its_runs(sweep, tmp_path):
    """results.csv and report.md say which code and arithmetic computed each number, and how to remake it;
    a run older than the record says "not recorded" instead of borrowing another run's commit."""
    for i, (commit, precision) in enumerate([("aaaa11112222", "bf16-mixed"), ("bbbb33334444", "32-true")]):
        path = sweep / f"{i}_arch=cnn,aug=none,seed={i}" / "metrics.json"
        m = json.loads(path.read_text())
        path.write_text(json.dumps({**m, "commit": commit, "precision": precision, "qc/gate": "msp"}))
    out = tmp_path / "out"
    assert report_main([str(sweep), "--out", str(out), "--no-plots", "--min-iid", "0.5"]) == 0
    with (out / "results.csv").open() as f:
        rows = {Path(r["run_dir"]).name: r for r in csv.DictReader(f)}
    assert (
        rows["0_arch=cnn,aug=none,seed=0"]["commit"],
        rows["0_arch=cnn,aug=none,seed=0"]["precision"],
    ) == (
        "aaaa11112222",
        "bf16-mixed",
    )
    assert rows["1_arch=cnn,aug=none,seed=1"]["precision"] == "32-true"
    assert rows["2_arch=cnn,aug=none,seed=2"]["commit"] == ""  # not recorded: left empty, never guessed
    assert (rows["0_arch=cnn,aug=none,seed=0"]["qc/gate"], rows["2_arch=cnn,aug=none,seed=2"]["qc/gate"]) == (
        "msp",
        "",
    )  # the gate each run chose, by name
    text = (out / "report.md").read_text()
    assert "| `aaaa11112222` | bf16-mixed | 1 |" in text
    assert "| `bbbb33334444` | 32-true | 1 |" in text
    assert "| not recorded | not recorded | 5 |" in text
    assert f"Report written by commit `{code_commit()}`" in text
    command = f"python -m shapeshift.report {sweep} --out {out} --no-plots --min-iid 0.5"
    assert f"Remake this report: `{command}`" in text


def test_the_commit_is_the_checkouts_head():
    """The commit is the checkout's HEAD (12 digits), `+dirty` only for uncommitted package changes."""
    commit = code_commit()
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert commit.removesuffix("+dirty") == head.stdout.strip()
    else:  # an installed copy outside a checkout
        assert commit.startswith("shapeshift ") or commit == "unknown"


def test_several_folders_partial_and_duplicates(tmp_path):
    a, b = tmp_path / "machine_a", tmp_path / "machine_b"
    make_run(a, "0_arch=cnn,aug=none", "cnn", "none", 0, metrics_for("cnn", "none", 0, 0.8))
    make_run(
        b / "nested" / "deeper", "1_arch=cnn,aug=none", "cnn", "none", 1, metrics_for("cnn", "none", 1, 1.0)
    )
    make_run(b, "2_arch=cnn,aug=none", "cnn", "none", 2, None)
    # The same run named twice (a folder and its parent) is counted once.
    result = rp.report([a, b, a / "0_arch=cnn,aug=none"], plots=False)
    assert len(result["runs"]) == 3
    (group,) = result["groups"]
    assert group.n == 2 and group.stats["test/iid/acc"].mean == pytest.approx(0.9)
    assert group.stats["test/iid/acc"].half == pytest.approx(T975_1 * math.sqrt(0.02) / math.sqrt(2))
    assert (a / "report.md").is_file() and not (b / "report.md").exists()
    assert "aug_gain.png" not in (a / "report.md").read_text()  # plots=False draws nothing


def test_no_runs_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert report_main([str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no runs found" in err
    assert report_main([str(tmp_path / "nope")]) == 1
    assert "is not a directory" in capsys.readouterr().err


def test_cli_in_a_subprocess_without_torch(sweep):
    proc = run_cli("report", [str(sweep)], timeout=120, PYTHONPROFILEIMPORTTIME="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["arch", "aug", "n", "iid", "position", "position", "s5", "ood", "mix"]
    assert lines[2].split()[:4] == ["cnn", "none", "3", "0.900"]
    assert "9 runs, 7 finished, 2 without metrics.json" in proc.stdout
    assert "CUDA out of memory" in proc.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "yaml" in imported and "matplotlib" in imported  # -X importtime did report
    assert not imported & {"torch", "lightning", "albumentations", "hydra"}


def test_runs_without_an_ood_catalog(tmp_path):
    """data=mnist runs have only i.i.d. metrics: the heatmap is drawn, the severity curves are skipped."""
    root = tmp_path / "mnist"
    for seed, acc in ((0, 0.97), (1, 0.99)):
        run = make_run(
            root,
            f"{seed}_seed={seed}",
            "maxpool",
            "none",
            seed,
            {
                "arch": "maxpool",
                "aug": "none",
                "seed": seed,
                "test/iid/acc": acc,
                "test/iid/ece": 0.01,
                "test/consistency": 0.9,
            },
        )
        hydra = {"hydra": {"runtime": {"choices": {"arch": "maxpool", "aug": "none", "data": "mnist"}}}}
        (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    result = rp.report([root])
    (group,) = result["groups"]
    assert group.stats["test/iid/acc"].mean == pytest.approx(0.98)
    assert set(result["plots"].values()) == {"heatmap.png"}
    assert set(result["skipped"]) == {"severity_none.png", "aug_gain.png"}
    text = (root / "report.md").read_text()
    assert "| maxpool | none | 2 | 0.980 ± " in text and "consistency" in text
    with (root / "results.csv").open() as f:
        assert {r["data"] for r in csv.DictReader(f)} == {"mnist"}


def test_a_strength_sweep_stays_apart_from_its_preset(tmp_path):
    """`aug.magnitude` runs: named basic-x2 from metrics.json, and from the Hydra config when unfinished."""
    root = tmp_path / "strength"
    make_run(root, "0_arch=cnn,aug=basic", "cnn", "basic", 0, metrics_for("cnn", "basic", 0, 0.9))
    make_run(
        root,
        "1_arch=cnn,aug=basic,aug.magnitude=2",
        "cnn",
        "basic",
        0,
        metrics_for("cnn", "basic-x2", 0, 0.8),
    )
    unfinished = make_run(root, "2_arch=cnn,aug=basic,aug.magnitude=0.5", "cnn", "basic", 0, None)
    config = yaml.safe_load((unfinished / ".hydra" / "config.yaml").read_text())
    config["aug"]["magnitude"] = 0.5
    (unfinished / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    result = rp.report([root], plots=False)
    assert sorted((g.aug, g.n) for g in result["groups"]) == [("basic", 1), ("basic-x2", 1)]
    assert sorted(r.aug for r in result["runs"]) == ["basic", "basic-x0.5", "basic-x2"]


def test_min_iid_leaves_out_runs_that_did_not_learn(sweep):
    """Like with like: cnn seed 0 (i.i.d. 0.8) and gap (0.7) are below 0.85, so they leave the groups."""
    result = rp.report([sweep], plots=False, min_iid=0.85)
    groups = {(g.arch, g.aug): g for g in result["groups"]}
    assert set(groups) == {("cnn", "none"), ("cnn", "basic")}
    assert groups["cnn", "none"].seeds == [1, 2]
    assert groups["cnn", "none"].stats["test/iid/acc"].mean == pytest.approx(0.95)
    text = (sweep / "report.md").read_text()
    assert "## Left out: did not learn the i.i.d. task (3)" in text and "i.i.d. accuracy 0.700 < 0.85" in text
    with (sweep / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 and sum(bool(r["left_out"]) for r in rows) == 3  # the CSV keeps every run
    assert report_main([str(sweep), "--no-plots", "--min-iid", "0.85"]) == 0


def test_quality_control_table_and_risk_coverage_plot(tmp_path):
    """Detector AUROCs and the gate's coverage per QC set, mean ± t-interval over seeds; the risk curve."""
    root = tmp_path / "qc"
    for seed, auroc in ((0, 0.90), (1, 0.96), (2, 0.99)):
        m = metrics_for("resnet18", "none", seed, 1.0)
        m.update(
            {
                "test/position/s5/auroc/knn": auroc,
                "test/position/s5/auroc/msp": 0.5,
                "test/position/s5/coverage": 0.1 * seed,
                "test/position/s5/accepted_acc": 0.0,
                "test/position/s5/fpr95/knn": 0.3,
                "test/position/s5/eaurc/knn": 0.01 * seed,
                "test/position/s5/eaurc/msp": 0.2,
                "test/position/s5/failure_auroc/knn": 0.9,
            }
        )
        run = make_run(root, f"{seed}_seed={seed}", "resnet18", "none", seed, m)
        (run / "risk_coverage.json").write_text(
            json.dumps({"set": "mix", "detector": "knn", "coverage": [0.5, 1.0], "risk": [0.0, 0.1 * seed]})
        )
    result = rp.report([root])
    text = (root / "report.md").read_text()
    mean, half = t_interval([0.90, 0.96, 0.99])
    row = (
        f"| resnet18 | none | 3 | {mean:.3f} ± {half:.3f} | 0.500 ± 0.000 | "
        f"{0.1:.3f} ± {t_interval([0.0, 0.1, 0.2])[1]:.3f} | 0.000 ± 0.000 |"
    )
    assert (
        "### `position/s5`" in text
        and "| arch | aug | n | knn | msp | gate coverage | gate accepted acc |" in text
    )
    assert row in text
    assert "fpr95" not in text.split("## Quality control")[0]  # detection metrics only in their own tables
    assert "failure_auroc" not in text.split("## Quality control")[0]
    failure = text.split("## Quality control: failure detection")[1]
    assert (
        f"| resnet18 | none | 3 | {0.01:.3f} ± {t_interval([0.0, 0.01, 0.02])[1]:.3f} | 0.200 ± 0.000 |"
        in failure
    )
    assert (root / "risk_coverage.png").read_bytes()[:8] == PNG_MAGIC
    assert "risk_coverage.png" in result["plots"].values()


def test_a_sweep_logged_to_wandb_gets_a_report_run(sweep, monkeypatch):
    from omegaconf import OmegaConf

    from shapeshift.tracking.after_sweep import ReportAfterSweep
    from tests.helpers import finished_wandb_records

    monkeypatch.setenv("WANDB_SILENT", "true")
    config = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": str(sweep)}},
            "logger": {
                "_target_": "lightning.pytorch.loggers.WandbLogger",
                "project": "shapeshift",
                "mode": "offline",
            },
        }
    )
    ReportAfterSweep(plots=True).on_multirun_end(config)
    (run_dir,) = (sweep / "wandb").glob("offline-run-*")
    records = finished_wandb_records(run_dir)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.job_type == "report" and run.run_group == f"{sweep.parent.name}_{sweep.name}"
    (table,) = (run_dir / "files" / "media" / "table" / "report").glob("results_*.table.json")
    assert len(json.loads(table.read_text())["data"]) == 7  # one row per finished run
    # The heatmap and gain plots as images; accuracy against severity as native W&B line charts instead.
    assert len(list((run_dir / "files" / "media" / "images" / "report").glob("*.png"))) == 2


def test_runs_that_differ_in_a_config_key_are_reported_apart(tmp_path):
    """A padding sweep of one arch and aug is three cells, not one mean over paddings; the seed never splits
    a cell, and a run made before the key existed reads "unset" rather than join a cell it may not match."""
    root = tmp_path / "mechanism"
    iid = {"zeros": 0.9, "reflect": 0.8, "circular": 0.7}
    for mode, acc in iid.items():
        for seed in (0, 1):
            run = make_run(
                root,
                f"arch.padding_mode={mode},seed={seed}",
                "resnet18",
                "none",
                seed,
                metrics_for("resnet18", "none", seed, acc),
            )
            keys = {"seed": seed, "arch.padding_mode": mode, "data.image_size": 64, "aug.magnitude": 1.0}
            (run / "run.json").write_text(json.dumps({"keys": keys, "identity": {}}))
    old = make_run(root, "before_the_knob", "resnet18", "none", 0, metrics_for("resnet18", "none", 0, 0.5))
    (old / "run.json").write_text(json.dumps({"keys": {"seed": 0, "data.image_size": 64}, "identity": {}}))
    other = make_run(root, "other_arch", "cnn", "none", 0, metrics_for("cnn", "none", 0, 0.6))
    (other / "run.json").write_text(
        json.dumps({"keys": {"seed": 0, "arch.padding_mode": "zeros"}, "identity": {}})
    )

    result = rp.report([root], plots=False)
    cells = {g.arch: (g.aug, g.n, round(g.stats["test/iid/acc"].mean, 6)) for g in result["groups"]}
    assert cells == {
        "cnn": ("none", 1, 0.6),  # a cell of one config needs no label
        "resnet18 padding_mode=circular": ("none", 2, 0.7),
        "resnet18 padding_mode=reflect": ("none", 2, 0.8),
        "resnet18 padding_mode=unset": ("none", 1, 0.5),
        "resnet18 padding_mode=zeros": ("none", 2, 0.9),
    }
    assert [g.arch for g in result["groups"]] == [  # the arch's place first, then its variants in order
        "cnn",
        *(f"resnet18 padding_mode={m}" for m in ("circular", "reflect", "unset", "zeros")),
    ]
    with (root / "results.csv").open() as f:
        variants = {r["variant"] for r in csv.DictReader(f)}
    assert variants == {
        "",
        "padding_mode=zeros",
        "padding_mode=reflect",
        "padding_mode=circular",
        "padding_mode=unset",
    }
    assert "| resnet18 padding_mode=reflect | none | 2 | 0.800" in (root / "report.md").read_text()


def test_a_sweep_of_one_config_has_no_variants(sweep):
    assert {r.variant for r in rp.collect([sweep])} == {""}


def test_a_short_list_key_is_labelled_by_its_values_a_long_one_by_a_digest(tmp_path):
    root = tmp_path / "rf"
    for i, (dilations, transforms) in enumerate([([1, 1, 1], ["a" * 30]), ([1, 2, 4, 8, 1], ["b" * 30])]):
        run = make_run(root, f"job{i}", "gap", "none", 0, metrics_for("gap", "none", 0, 0.9))
        keys = {"seed": 0, "arch.dilations": dilations, "aug.transforms": transforms}
        (run / "run.json").write_text(json.dumps({"keys": keys, "identity": {}}))
    labels = sorted(g.arch for g in rp.report([root], plots=False)["groups"])
    assert labels[0].startswith("gap dilations=[1,1,1] transforms=") and len(labels[0].split("=")[-1]) == 6
    assert labels[1].startswith("gap dilations=[1,2,4,8,1] transforms=")


def test_a_report_remade_from_its_csv_has_the_same_tables(sweep, tmp_path):
    """--from-csv: the runs' folders gone, the CSV a report wrote gives the same tables and CSV, and with
    --shift the catalog that puts severity axes on a scale."""
    first = tmp_path / "first"
    assert report_main([str(sweep), "--out", str(first), "--no-plots", "--min-iid", "0.85"]) == 0
    catalog = tmp_path / "catalog.yaml"
    families = {f: [{"affine": {"rotate": d}} for d in (15, 30, 60, 90, 180)] for f in FAMILIES}
    catalog.write_text(yaml.safe_dump({"families": families}))
    again = tmp_path / "again"
    result = rp.report([], again, False, from_csv=first / "results.csv", shift=catalog, min_iid=0.85)

    def sections(path):  # the tables and the left-out runs (a CSV holds no unfinished run)
        text = path.read_text()
        end = min(text.find(h) for h in ("## Runs without", "## Provenance") if h in text)
        return text[text.index("## Main table") : end]

    assert sections(again / "report.md") == sections(first / "report.md")
    assert (again / "results.csv").read_text() == (first / "results.csv").read_text()
    assert "Runs from `" + str(first / "results.csv") + "`" in (again / "report.md").read_text()
    (tmp_path / "plots").mkdir()
    drawn, skipped = rp.draw_all(tmp_path / "plots", result["groups"], result["runs"])
    assert "risk_coverage.png" not in drawn.values()  # its curves are in the folders, not the CSV
    assert {"heatmap.png", "severity_none.png", "aug_gain.png"} <= set(drawn.values())
    figure = rp.plots.severity_curves(tmp_path / "s.png", result["groups"], result["runs"], "none")
    ax = figure.axes[0]
    assert list(ax.lines[0].get_xdata()) == [0.0, 15.0, 30.0, 60.0, 90.0, 180.0]
    assert ax.get_xlabel() == "affine.rotate (deg)"


def test_report_needs_folders_or_a_csv(tmp_path, capsys):
    with pytest.raises(SystemExit):
        report_main([])
    assert "one of the two" in capsys.readouterr().err
    assert report_main(["--from-csv", str(tmp_path / "nothing.csv")]) == 1
    assert "--from-csv" in capsys.readouterr().err
