"""O.o.d. detectors and the gate on data where the right answer is known in closed form."""

import math

import pytest
import torch
from torch import nn

from shapeshift.models.features import tapped
from shapeshift.qc.detectors import MAX_WIDTH, SHRINKAGE, Energy, KNearest, Mahalanobis, MaxSoftmax
from shapeshift.qc.gate import SaturatedScores, detection, gate_metrics, risk_coverage, threshold


def test_msp_and_energy_are_exact_and_do_not_saturate():
    logits = torch.tensor([[0.0, 40.0], [0.0, 50.0], [1.0, 1.0]])
    msp = MaxSoftmax().score(logits, {})
    assert torch.allclose(
        msp,
        torch.tensor(
            [-math.log1p(math.exp(-40)), -math.log1p(math.exp(-50)), math.log(0.5)], dtype=torch.float64
        ),
        rtol=1e-12,
    )
    assert msp[1] > msp[0]  # float32 softmax calls both 1.0: this score still orders them
    assert torch.allclose(Energy().score(logits, {}), torch.logsumexp(logits.double(), 1))


def test_mahalanobis_on_gaussian_clusters_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    means, sigma = torch.tensor([[4.0, 0.0, 0.0], [-4.0, 0.0, 0.0]]), 0.5
    labels = torch.arange(2).repeat_interleave(20000)
    x = means[labels] + sigma * torch.randn(len(labels), 3, generator=g)
    det = Mahalanobis("global")
    det.fit(x, labels)
    assert torch.allclose(det.means.float(), means, atol=0.02)
    queries = torch.tensor([[4.0, 0.0, 0.0], [4.0, 1.0, 0.0], [0.0, 0.0, 0.0], [-4.0, 0.0, 2.0]])
    expected = -torch.stack([((queries - m) ** 2).sum(1) for m in means]).min(0).values / sigma**2
    assert torch.allclose(det.score(None, {"global": queries}).float(), expected, rtol=0.03, atol=0.02)


def test_knn_is_the_cosine_to_the_kth_neighbour():
    angles = torch.deg2rad(torch.arange(360.0))
    bank = torch.stack([torch.cos(angles), torch.sin(angles)], 1) * 7.0  # any norm: features are normalised
    det = KNearest("spatial", k=3)
    det.fit(bank, torch.zeros(360, dtype=torch.long))
    query = torch.tensor([[math.cos(math.radians(0.5)), math.sin(math.radians(0.5))]])
    # Neighbours at 0.5, 0.5, 1.5, 1.5 degrees: the third is 1.5 degrees away.
    assert det.score(None, {"spatial": query}).item() == pytest.approx(math.cos(math.radians(1.5)), abs=1e-6)
    with pytest.raises(ValueError, match="at least k=3"):
        det.fit(bank[:2], torch.zeros(2, dtype=torch.long))


def test_threshold_keeps_the_share_asked_for_and_refuses_ties():
    scores = torch.arange(100.0)
    cut = threshold(scores, 0.95)
    assert cut == 5.0 and int((scores >= cut).sum()) == 95
    with pytest.raises(SaturatedScores, match="only 1 distinct scores among 100"):
        threshold(torch.ones(100), 0.95)  # saturated confidences: no threshold means anything
    tied = torch.cat([torch.arange(90.0), torch.full((10,), 90.0)])
    assert threshold(tied, 0.95) == 5.0


def test_detection_metrics_on_known_separations():
    iid, ood = torch.arange(100.0) + 1000.0, torch.arange(100.0) + 1000.0 - 0.5
    assert detection(iid + 200, ood)["auroc"] == 1.0 and detection(iid + 200, ood)["fpr95"] == 0.0
    # Large scores, small gaps: ranks keep the order a float32 sigmoid would erase.
    assert (
        detection(
            torch.tensor([1e4 + 0.1] * 10, dtype=torch.float64), torch.tensor([1e4] * 10, dtype=torch.float64)
        )["auroc"]
        == 1.0
    )
    same = detection(torch.ones(50), torch.ones(50))
    assert same["auroc"] == 0.5 and same["fpr95"] == 1.0
    # iid 0..99, ood 50..149 shifted down: at TPR 95% (accept iid >= 5) the ood scores -50..49 above 5 are 45.
    assert detection(torch.arange(100.0), torch.arange(100.0) - 50)["fpr95"] == pytest.approx(0.45)


def test_gate_coverage_accepted_accuracy_and_risk():
    scores = torch.tensor([0.1, 0.2, 0.8, 0.9])
    correct = torch.tensor([False, True, True, False])
    assert gate_metrics(scores, correct, 0.5) == {"coverage": 0.5, "accepted_acc": 0.5}
    assert gate_metrics(scores, correct, 2.0) == {"coverage": 0.0, "accepted_acc": None}
    curve = risk_coverage(scores, correct, points=4)
    assert curve["coverage"] == [0.25, 0.5, 0.75, 1.0] and curve["risk"] == [1.0, 0.5, 1 / 3, 0.5]


def test_the_tap_reads_the_last_map_and_every_stage():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 2),
    )
    x = torch.randn(5, 1, 8, 8)
    with tapped(net) as tap:
        net(x)
    f = tap.features()
    last = torch.relu(net[2](torch.relu(net[0](x))))  # 6 x 4 x 4; the 1x1 pooled map is not spatial
    assert torch.allclose(f["global"], last.mean((2, 3)), atol=1e-6)
    assert torch.allclose(f["spatial"], nn.functional.adaptive_avg_pool2d(last, 2).flatten(1), atol=1e-6)
    assert f["stages"].shape == (5, 4 * 4 + 6 * 4)  # 8x8 stage and 4x4 stage, quadrant means each
    assert not net[0]._forward_hooks  # detached afterwards


class EagerTap:
    """The reference: every leaf's output pooled at once, the last of each size kept."""

    def __init__(self):
        self.by_size = {}

    def hook(self, module, inputs, output):
        if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[2] * output.shape[3] > 1:
            fmap = output.detach().float()
            self.by_size[output.shape[2] * output.shape[3]] = (
                fmap.mean(dim=(2, 3)),
                nn.functional.adaptive_avg_pool2d(fmap, 2).flatten(1),
            )


@pytest.mark.parametrize("arch", ["cnn", "maxpool", "gap", "resnet18", "resnet18_aa"])
def test_the_tap_pools_once_per_stage_exactly_what_pooling_every_layer_gave(arch, cfg_factory):
    """In-place ops after a stage's last layer (ReLU(inplace=True), a residual `+=`) must not change what is
    read: the lazy tap equals, bit for bit, a tap that pools every leaf's output as it appears (bf16 too)."""
    from shapeshift.engine.pipeline import build_backbone  # noqa: PLC0415

    torch.manual_seed(0)
    backbone = build_backbone(cfg_factory(f"arch={arch}"), arch).eval()
    x = torch.randn(4, 3, 64, 64)
    for autocast in (False, True):
        eager = EagerTap()
        handles = [m.register_forward_hook(eager.hook) for m in backbone.modules() if not list(m.children())]
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            backbone(x)
            with tapped(backbone) as tap:
                backbone(x)
        for h in handles:
            h.remove()
        stages = [eager.by_size[s] for s in sorted(eager.by_size, reverse=True)]
        f = tap.features()
        assert torch.equal(f["global"], stages[-1][0]) and torch.equal(f["spatial"], stages[-1][1])
        assert torch.equal(
            f["stages"], torch.cat([nn.functional.normalize(q, dim=1) for _, q in stages], dim=1)
        )


def shrunk_precision(x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lee et al.'s class means and shared precision, written out plainly: the reference for the detector."""
    x = x.double()
    means = torch.stack([x[labels == c].mean(0) for c in labels.unique()])
    centred = x - means[labels]
    cov = centred.T @ centred / len(x)
    cov = (1 - SHRINKAGE) * cov + SHRINKAGE * cov.diagonal().mean() * torch.eye(len(cov), dtype=cov.dtype)
    return means, torch.linalg.inv(cov)


def min_quadratic_form(test: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    diff = test.double()[:, None, :] - means[None]
    return -torch.einsum("bcd,de,bce->bc", diff, precision, diff).min(dim=1).values


def test_mahalanobis_score_equals_the_per_class_quadratic_form():
    g = torch.Generator().manual_seed(1)
    x, labels = torch.randn(600, 40, generator=g), torch.randint(0, 3, (600,), generator=g)
    x[:, :20] = x[:, 20:] + 0.1 * x[:, :20]  # strongly correlated features: the precision matters
    det = Mahalanobis("global")
    det.fit(x, labels)
    means, precision = shrunk_precision(x, labels)
    test = 2 * torch.randn(50, 40, generator=g)
    assert torch.allclose(
        det.score(None, {"global": test}), min_quadratic_form(test, means, precision), rtol=1e-10, atol=1e-9
    )
    # As qc.pt is read back: the means and the covariance's Cholesky factor (features this narrow are not
    # sketched: the sketch's buffers are empty).
    state = det.state_dict()
    assert set(state) == {"means", "chol", "sketch.bucket", "sketch.sign"}
    assert state["sketch.bucket"].numel() == 0
    loaded = Mahalanobis("global")
    for key, value in state.items():
        owner, _, name = key.rpartition(".")
        setattr(loaded.get_submodule(owner), name, value)
    assert torch.equal(loaded.score(None, {"global": test}), det.score(None, {"global": test}))


def test_wide_features_are_sketched_to_a_fixed_width_keeping_distances():
    g = torch.Generator().manual_seed(2)
    x, labels = torch.randn(300, 4096, generator=g), torch.randint(0, 2, (300,), generator=g)
    det = Mahalanobis("stages")
    det.fit(x, labels)
    assert det.chol.shape == (MAX_WIDTH, MAX_WIDTH) and det.means.shape == (2, MAX_WIDTH)
    sketched = det.sketch(x[:50])
    # A count sketch keeps squared norms in expectation: within 20% for 4096 -> 512 dims.
    ratio = sketched.pow(2).sum(1) / x[:50].pow(2).sum(1)
    assert (ratio - 1).abs().max() < 0.2
    # The same seed gives the same map: a refit or another process scores alike.
    again = Mahalanobis("stages")
    again.fit(x, labels)
    assert torch.equal(again.sketch.bucket, det.sketch.bucket)
    assert torch.allclose(again.score(None, {"stages": x[:5]}), det.score(None, {"stages": x[:5]}))
