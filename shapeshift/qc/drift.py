"""Is a folder of deployment images different from the validation images at all? A kernel two-sample test
in the model's feature space (Gretton et al. 2012, "A Kernel Two-Sample Test", JMLR 13), with a
permutation p-value, and the catalog sets the folder is closest to by the same distance.

- MMD²: the unbiased estimate of the squared maximum mean discrepancy under a Gaussian kernel whose
  bandwidth is the median pairwise distance of the pooled sample (the median heuristic), on the model's
  `stages` features times a delta on its predicted class: the joint distribution of (features, prediction)
  is compared, so a change in the class balance or within one predicted class counts.
- p-value: the share of label permutations of the pooled sample whose MMD² is at least the observed one,
  (1 + #{≥}) / (1 + permutations): exact at any sample size under the null that both samples come from
  one distribution, so a fresh i.i.d. sample is rejected at most at the stated level.
- effect size: MMD² over the spread of its permutation distribution (how many null standard deviations
  the observed discrepancy lies above the null's mean), beside MMD² itself.
- images needed: the smallest random subset of the deployment sample, on a doubling ladder from 25, on
  which the test already rejects: how much data the verdict took.

alibi-detect, which implements this, is under the Business Source License and pins numpy<2; TorchDrift has
been idle since 2022. The test is a few lines of torch, so it is written here and tested against its null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from shapeshift.data.base import model_input
from shapeshift.models.features import tapped

LEVEL = 0.05
PERMUTATIONS = 500
LADDER_START = 25


@dataclass(frozen=True)
class DriftTest:
    mmd2: float  # unbiased MMD² between the two samples (can be slightly negative under the null)
    p: float  # permutation p-value
    effect: float  # (MMD² − null mean) / null sd
    n: int  # deployment images
    n_reference: int  # validation images
    needed: int | None  # the fewest deployment images (doubling ladder) at which it rejects; None: never
    level: float = LEVEL
    permutations: int = PERMUTATIONS

    @property
    def drifted(self) -> bool:
        return self.p <= self.level

    def describe(self) -> str:
        verdict = (
            f"different from the validation images (p = {self.p:.3g} ≤ {self.level:g})"
            if self.drifted
            else f"no evidence of a difference from the validation images (p = {self.p:.3g} > {self.level:g})"
        )
        needed = f"; it took {self.needed} images to reject" if self.needed else ""
        return (
            f"drift: {verdict}; MMD² {self.mmd2:.4g}, {self.effect:.1f} null sd above the null mean "
            f"({self.n} images vs {self.n_reference} validation images, {self.permutations} permutations"
            f"{needed})"
        )


FEATURES = "stages"  # see models/features.py: every stage's 2x2 means, where position and texture live


@dataclass(frozen=True)
class Features:
    features: torch.Tensor  # (n, d)
    classes: torch.Tensor  # (n,) the model's predictions


def image_features(model, images: np.ndarray, kind: str = FEATURES, batch: int = 500) -> Features:
    """The model's `kind` features (models/features.py) of uint8 images and its predicted classes."""
    device = next(model.parameters()).device
    feats, classes = [], []
    model.eval()
    with torch.no_grad(), tapped(model.backbone) as tap:
        for i in range(0, len(images), batch):
            logits = model(model_input(images[i : i + batch]).to(device))
            feats.append(tap.features()[kind].cpu())
            classes.append(logits.argmax(1).cpu())
    if not feats:
        return Features(torch.empty(0, 0), torch.empty(0, dtype=torch.long))
    return Features(torch.cat(feats), torch.cat(classes))


def _sq_distances(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min_(0)


def bandwidth(x: torch.Tensor, y: torch.Tensor) -> float:
    """The median heuristic: the median pairwise distance of the pooled sample (1 where all coincide)."""
    d = _sq_distances(torch.cat([x, y]).double())
    off = d[~torch.eye(len(d), dtype=torch.bool)]
    median = float(off.median().sqrt()) if len(off) else 0.0
    return median if median > 0 else 1.0


def _kernel(
    x: torch.Tensor, y: torch.Tensor, sigma: float, classes: torch.Tensor | None = None
) -> torch.Tensor:
    """The Gaussian kernel of the pooled sample; with `classes` (the model's prediction for each pooled
    image) the product with the class delta: a kernel on (features, predicted class), whose MMD compares the
    joint distributions. A model that reads the quadrant predicts "star" for whatever sits where stars
    belong: only the features within a predicted class tell a moon there from a star."""
    k = torch.exp(-_sq_distances(torch.cat([x, y]).double()) / (2 * sigma**2))
    if classes is not None:
        k = k * (classes[:, None] == classes[None, :])
    return k


def _mmd2(k: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD² for each row of `first` (a boolean mask per permutation: True = the first sample).
    One matrix product per batch of masks: the within-second and cross sums follow from the within-first
    sum, the row sums of `k` and its total."""
    a = first.double()
    n = a.sum(1)
    m = k.shape[0] - n
    diag, rows, total = k.diagonal(), k.sum(0), k.sum()
    aka = ((a @ k) * a).sum(1)
    akr = a @ rows
    kxx = aka - a @ diag
    kxy = akr - aka
    kyy = total - 2 * akr + aka - (diag.sum() - a @ diag)
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)


def mmd_test(
    x: torch.Tensor,
    y: torch.Tensor,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    level: float = LEVEL,
    ladder: bool = True,
    x_classes: torch.Tensor | None = None,
    y_classes: torch.Tensor | None = None,
) -> DriftTest:
    """Test whether `x` (deployment features, n x d) and `y` (validation features) share a distribution;
    with the model's predicted classes of both, whether (features, predicted class) do."""
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"the drift test needs at least 2 images on each side, got {len(x)} and {len(y)}")
    x, y = x.flatten(1).double(), y.flatten(1).double()
    classes = None if x_classes is None else torch.cat([x_classes, y_classes])
    sigma = bandwidth(x, y)
    k = _kernel(x, y, sigma, classes)
    n, total = len(x), len(x) + len(y)
    observed = torch.zeros(1, total, dtype=torch.bool)
    observed[0, :n] = True
    gen = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(total, generator=gen) for _ in range(permutations)])
    null_masks = torch.zeros(permutations, total, dtype=torch.bool)
    null_masks.scatter_(1, order[:, :n], True)
    stat = float(_mmd2(k, observed)[0])
    null = torch.cat([_mmd2(k, chunk) for chunk in null_masks.split(100)])
    p = (1 + int((null >= stat).sum())) / (1 + permutations)
    sd = float(null.std())
    effect = (stat - float(null.mean())) / sd if sd > 0 else (math.inf if stat > float(null.mean()) else 0.0)
    needed = None
    if ladder and p <= level:
        subset = torch.randperm(n, generator=gen)  # random, not the first files: folders come sorted by class
        size = LADDER_START
        while size < n:
            part = subset[:size]
            sub = None if x_classes is None else x_classes[part]
            if mmd_test(x[part], y, permutations, seed, level, False, sub, y_classes).p <= level:
                needed = size
                break
            size *= 2
        needed = needed or n
    return DriftTest(stat, p, effect, n, len(y), needed, level, permutations)


def nearest_sets(
    x: Features, catalog: Mapping[str, Features], reference: Features, top: int = 3
) -> list[tuple[str, float]]:
    """The `top` catalog sets (name -> features and predicted classes) closest to `x` by MMD², under the
    bandwidth of `x` pooled with the validation features, so every set is measured with the same kernel."""
    feats = x.features.flatten(1).double()
    sigma = bandwidth(feats, reference.features.flatten(1).double())
    distances = []
    for name, other in catalog.items():
        f = other.features.flatten(1).double()
        if len(f) < 2:
            continue
        mask = torch.zeros(1, len(feats) + len(f), dtype=torch.bool)
        mask[0, : len(feats)] = True
        k = _kernel(feats, f, sigma, torch.cat([x.classes, other.classes]))
        distances.append((name, float(_mmd2(k, mask)[0])))
    return sorted(distances, key=lambda t: t[1])[:top]


def drift_test(x: Features, reference: Features, seed: int = 0, level: float = LEVEL) -> DriftTest:
    """The deployment images' (features, predicted class) against the validation images'."""
    return mmd_test(
        x.features,
        reference.features,
        seed=seed,
        level=level,
        x_classes=x.classes,
        y_classes=reference.classes,
    )
