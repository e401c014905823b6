"""`trainer.precision=auto`: bf16 autocast where the hardware computes bf16 natively, fp32 elsewhere;
an explicit precision always wins. The hardware is faked through `runtime.cpu_flags` and torch.cuda."""

import pytest
import torch

from shapeshift import runtime
from shapeshift.runtime import choose_precision
from shapeshift.train import train


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
    monkeypatch.setattr(runtime, "cpu_flags", lambda: set())
    fp32 = train(cfg_factory("debug=smoke", "logger=none", output_dir=tmp_path / "a"))
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx512_bf16"})
    bf16 = train(cfg_factory("debug=smoke", "logger=none", output_dir=tmp_path / "b"))
    forced = train(
        cfg_factory("debug=smoke", "logger=none", "trainer.precision=32-true", output_dir=tmp_path / "c")
    )
    assert (fp32["precision"], bf16["precision"], forced["precision"]) == ("32-true", "bf16-mixed", "32-true")
    # Resolved before fingerprinting: the same config on other hardware is another run.
    assert fp32["fingerprint"] == forced["fingerprint"] != bf16["fingerprint"]
