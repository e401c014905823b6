"""`trainer.precision=auto`: bf16 autocast where the hardware computes bf16 natively, fp32 elsewhere;
an explicit precision always wins. The hardware is faked through `runtime.cpu_flags` and torch.cuda."""

import pytest
import torch

from shapeshift.engine import runtime
from shapeshift.engine.runtime import choose_precision
from shapeshift.runs.fingerprint import digest, fingerprint_keys
from shapeshift.runs.folder import read_record
from shapeshift.train import resolve_hardware_choices, train


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx512f", "avx512_bf16"}, "bf16-mixed"),
        ({"amx_tile", "amx_bf16"}, "bf16-mixed"),
        ({"avx2", "avx512f"}, "32-true"),  # AVX-512 without its bf16 extension: bf16 would be emulated
        (set(), "32-true"),
    ],
)
def test_cpu_precision_follows_the_flags(flags, expected, monkeypatch):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    precision, why = choose_precision("auto", "auto")
    assert precision == expected
    assert ("natively" in why) == (expected == "bf16-mixed")
    assert choose_precision("32-true", "cpu") == ("32-true", "set in the config")  # explicit wins
    assert choose_precision("bf16-mixed", "cpu")[0] == "bf16-mixed"


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_gpu_precision_follows_the_device(bf16, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "Fake GPU")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx512_bf16"})  # the GPU decides, not the CPU
    assert choose_precision("auto", "gpu")[0] == expected
    assert choose_precision("auto", "auto")[0] == expected


def test_a_run_records_the_precision_it_used(cfg_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx512_bf16"})
    bf16 = train(cfg_factory("debug=smoke", "logger=none", output_dir=tmp_path / "b"))
    assert bf16["precision"] == "bf16-mixed"
    assert read_record(tmp_path / "b")["keys"]["trainer.precision"] == "bf16-mixed"  # what restore reads back

    def fingerprint(*overrides):
        cfg = cfg_factory("debug=smoke", "logger=none", *overrides)
        resolve_hardware_choices(cfg)
        return digest(fingerprint_keys(cfg, "smoke"))

    assert fingerprint() == bf16["fingerprint"]
    monkeypatch.setattr(runtime, "cpu_flags", lambda: set())
    # Resolved before fingerprinting: the same config on other hardware is another run; an explicit
    # precision is the same run wherever it resolves to.
    assert fingerprint() == fingerprint("trainer.precision=32-true") != bf16["fingerprint"]
