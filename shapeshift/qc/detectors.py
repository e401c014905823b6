"""O.o.d. detectors: each turns logits and features into one score per image, higher = more i.i.d.

- `msp`: log of the maximum softmax probability (Hendrycks & Gimpel 2017), computed so that confident
  models do not saturate at 1.0 (or at log 1 = 0).
- `energy`: logsumexp of the logits, the negative free energy (Liu et al. 2020).
- `mahalanobis`: minus the smallest Mahalanobis distance to a class mean under one shared covariance
  (Lee et al. 2018), on the `global` features; `mahalanobis_spatial` on the `spatial` ones.
- `knn`: the cosine similarity of the L2-normalised features to their k-th nearest training neighbour
  (Sun et al. 2022; a monotone map of their distance); `knn_spatial` on the `spatial` ones.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shapeshift.config import DETECTORS

SHRINKAGE = 0.1  # covariance shrunk towards a scaled identity: stable when features outnumber images


class Detector(nn.Module):
    features: str | None = None  # the feature kind read, None for logit detectors

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Fit on training features (N, D) and labels (N,); logit detectors need nothing."""

    def score(self, logits: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class MaxSoftmax(Detector):
    def score(self, logits, features):
        # log p_max = -log1p(sum of the other classes' exp(z - z_max)): exact where z_max - logsumexp
        # would round to 0 (gaps beyond ~37 in float64, ~17 in float32).
        z = logits.double()
        top = z.max(dim=1, keepdim=True)
        others = z.scatter(1, top.indices, -math.inf)
        return -torch.log1p(torch.exp(torch.logsumexp(others - top.values, dim=1)))


class Energy(Detector):
    def score(self, logits, features):
        return torch.logsumexp(logits.double(), dim=1)


class Mahalanobis(Detector):
    def __init__(self, features: str = "global"):
        super().__init__()
        self.features = features
        self.register_buffer("means", torch.empty(0))
        # L with covariance = L L^T (lower triangular), so (x - m)^T cov^-1 (x - m) = |L^-1 (x - m)|^2: no
        # inverse is ever formed. For the anti-aliased ResNet's 8,192-wide `stages` features, inverting the
        # covariance and then factoring the precision took 17 s and two more 0.5 GiB matrices; its Cholesky
        # factor alone takes 2.5 s, computed in place.
        self.register_buffer("chol", torch.empty(0))

    def fit(self, features, labels):
        x = features.to(torch.float64, copy=True)
        classes = labels.unique()
        means = torch.stack([x[labels == c].mean(0) for c in classes])
        x -= means[torch.searchsorted(classes, labels)]
        cov = x.T @ x
        del x
        cov /= len(labels)
        scale = cov.diagonal().mean()
        cov *= 1 - SHRINKAGE
        cov.diagonal().add_(SHRINKAGE * scale)
        self.means, self.chol = means, torch.linalg.cholesky(cov, out=cov)

    def score(self, logits, features):
        # One triangular solve per batch for all classes: the class means are whitened once (B + C rows).
        x = torch.cat([features[self.features].double(), self.means])
        z = torch.linalg.solve_triangular(self.chol, x.T, upper=False).T
        z, zm = z[: len(z) - len(self.means)], z[len(z) - len(self.means) :]
        d2 = ((z[:, None, :] - zm[None]) ** 2).sum(dim=2)  # (B, C)
        return -d2.min(dim=1).values


class KNearest(Detector):
    def __init__(self, features: str = "global", k: int = 10):
        super().__init__()
        self.features, self.k = features, k
        self.register_buffer("bank", torch.empty(0))

    def fit(self, features, labels):
        if len(features) < self.k:
            raise ValueError(f"knn needs at least k={self.k} training images, got {len(features)}")
        self.bank = nn.functional.normalize(features.float(), dim=1)

    def score(self, logits, features):
        x = nn.functional.normalize(features[self.features].float(), dim=1)
        return (x @ self.bank.T).topk(self.k, dim=1).values[:, -1].double()


def build(name: str, k: int = 10) -> Detector:
    """A detector by its name in `config.DETECTORS`: `msp`, `energy`, or `<mahalanobis|knn>[_<features>]`,
    the features being the pooled last map (`global`, the default), its 2x2 grid (`spatial`) or every
    stage's map (`stages`)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    if name in ("msp", "energy"):
        return MaxSoftmax() if name == "msp" else Energy()
    kind, _, features = name.partition("_")
    return Mahalanobis(features or "global") if kind == "mahalanobis" else KNearest(features or "global", k)
