"""O.o.d. detectors: each turns logits and features into one score per image, higher = more i.i.d.

- `msp`: log of the maximum softmax probability (Hendrycks & Gimpel 2017), computed so that confident
  models do not saturate at 1.0 (or at log 1 = 0).
- `energy`: logsumexp of the logits, the negative free energy (Liu et al. 2020).
- `mahalanobis`: minus the smallest Mahalanobis distance to a class mean under one shared covariance
  (Lee et al. 2018), on the `global` features; `mahalanobis_spatial` on the `spatial` ones.
- `knn`: the cosine similarity of the L2-normalised features to their k-th nearest training neighbour
  (Sun et al. 2022; a monotone map of their distance); `knn_spatial` on the `spatial` ones.
- `reference` (when other runs are given as references): the log of the references' mean probability
  for the class this model predicts. Disagreement between models is an error signal (Jiang et al. 2022,
  Chen et al. 2021): a model that reads the quadrant cannot see its own errors, a model that reads the
  shape can.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shapeshift.config.schema import DETECTORS

SHRINKAGE = 0.1  # covariance shrunk towards a scaled identity: stable when features outnumber images
MAX_WIDTH = 512  # wider features are sketched down to this many dimensions before fitting (see Sketch)


class Sketch(nn.Module):
    """A count sketch (feature hashing; Weinberger et al. 2009): each input dimension is added, with a
    random sign, into one of `width` outputs. Inner products and distances are kept in expectation.

    The anti-aliased ResNet's `stages` features are 8,192 wide: their covariance in float64 was 512 MiB
    of `qc.pt` and most of the fit. Sketched to 512, it is 2 MiB, and the map costs two small vectors
    (a dense random projection would be 16 MiB per detector). Identity for features already narrow."""

    def __init__(self, width: int = MAX_WIDTH, seed: int = 0):
        super().__init__()
        self.width, self.seed = width, seed
        self.register_buffer("bucket", torch.empty(0, dtype=torch.long))
        self.register_buffer("sign", torch.empty(0))

    def fit(self, dim: int) -> None:
        if dim <= self.width:
            self.bucket, self.sign = torch.empty(0, dtype=torch.long), torch.empty(0)
            return
        g = torch.Generator().manual_seed(self.seed)
        self.bucket = torch.randint(self.width, (dim,), generator=g)
        self.sign = torch.randint(2, (dim,), generator=g).float() * 2 - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self.bucket):
            return x
        out = x.new_zeros(len(x), self.width)
        return out.index_add_(1, self.bucket.to(x.device), x * self.sign.to(x.device, x.dtype))


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
        self.sketch = Sketch()
        self.register_buffer("means", torch.empty(0))
        # L with covariance = L L^T (lower triangular), so (x - m)^T cov^-1 (x - m) = |L^-1 (x - m)|^2: no
        # inverse is ever formed. For the anti-aliased ResNet's 8,192-wide `stages` features, inverting the
        # covariance and then factoring the precision took 17 s and two more 0.5 GiB matrices; its Cholesky
        # factor alone takes 2.5 s, computed in place.
        self.register_buffer("chol", torch.empty(0))

    def fit(self, features, labels):
        self.sketch.fit(features.shape[1])
        x = self.sketch(features.float()).to(torch.float64)
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
        x = torch.cat([self.sketch(features[self.features].float()).double(), self.means])
        z = torch.linalg.solve_triangular(self.chol, x.T, upper=False).T
        z, zm = z[: len(z) - len(self.means)], z[len(z) - len(self.means) :]
        d2 = ((z[:, None, :] - zm[None]) ** 2).sum(dim=2)  # (B, C)
        return -d2.min(dim=1).values


class KNearest(Detector):
    def __init__(self, features: str = "global", k: int = 10):
        super().__init__()
        self.features, self.k = features, k
        self.sketch = Sketch()
        self.register_buffer("bank", torch.empty(0))

    def fit(self, features, labels):
        if len(features) < self.k:
            raise ValueError(f"knn needs at least k={self.k} training images, got {len(features)}")
        self.sketch.fit(features.shape[1])
        self.bank = nn.functional.normalize(self.sketch(features.float()), dim=1)

    def score(self, logits, features):
        x = nn.functional.normalize(self.sketch(features[self.features].float()), dim=1)
        return (x @ self.bank.T).topk(self.k, dim=1).values[:, -1].double()


def log_prob_of(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[classes], exact where it rounds to 0: -softplus(logsumexp_(j != c) z_j - z_c)."""
    z = logits.double()
    chosen = z.gather(1, classes[:, None])
    others = z.scatter(1, classes[:, None], -math.inf)
    return -nn.functional.softplus(torch.logsumexp(others - chosen, dim=1))


def reference_score(logits: torch.Tensor, reference_logits: list[torch.Tensor]) -> torch.Tensor:
    """log of the references' mean probability for the model's predicted class (higher = they agree)."""
    predicted = logits.argmax(1)
    per_reference = torch.stack([log_prob_of(r, predicted) for r in reference_logits])
    return torch.logsumexp(per_reference, dim=0) - math.log(len(reference_logits))


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
