"""AugMix on the whole batch where the model runs: `aug=augmix_batched`.

`aug=augmix` (shapeshift/data/augmix.py) runs three chains of Albumentations calls per image in the data
loader: about 900 images/s on this 2-core machine, 0.4x the strided CNN's training. On a GPU it bounds
any small model. This is the same recipe on the batch, as `basic_batched` is for `basic`
(shapeshift/data/batch_augment.py: the loader only draws each sample's numbers, from a hash of its seed,
epoch and index):

    w ~ Dirichlet(1, 1, 1) (normalised exponentials)    m ~ Beta(1, 1) (a uniform)
    chain_i = op_1 o ... o op_d (x),  d uniform in {1, 2, 3} (or `depth`), each op uniform from the nine
    out = (1 - m) x + m * sum_i w_i chain_i

The nine operations and their ranges are `augmix`'s (conf/aug/augmix.yaml: the reference's at severity 3),
the ones AugMix keeps because ImageNet-C does not test them. Each operation is computed for the samples
that drew it, all of them at once. Departures from `augmix`: pixels stay float through a chain (rounded
only where an operation needs integers: equalize, posterize); autocontrast stretches each channel's
minimum and maximum to 0 and 255 (PIL's method; Albumentations' default maps the histogram's CDF);
equalize is OpenCV's `equalizeHist` formula per channel, as Albumentations' default `mode="cv"`; only the
reference's concentration of 1 is built (`alpha`).
"""

from __future__ import annotations

import numpy as np
import torch

from shapeshift.config.errors import ConfigError
from shapeshift.data.batch_augment import BatchTransform, warp

OPERATIONS = (
    "autocontrast",
    "equalize",
    "posterize",
    "solarize",
    "rotate",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
GEOMETRIC = 4  # OPERATIONS[:4] change pixel values; the rest move pixels and share one warp per step
MAX_DEPTH = 3


class BatchAugMix(BatchTransform):
    """`width` chains of 1-3 (`depth=-1`) or `depth` operations, mixed with Dirichlet(1) weights and then
    with the image by Beta(1, 1). Ranges: `rotate` and `shear` in degrees and `translate` a fraction of
    the side, each drawn in [-x, x]; `posterize_bits` and `solarize_threshold` (a fraction of 255) as
    Albumentations' Posterize and Solarize take them."""

    def __init__(
        self,
        width: int = 3,
        depth: int = -1,
        alpha: float = 1.0,
        rotate: float = 9.0,
        shear: float = 5.1,
        translate: float = 0.1,
        posterize_bits: tuple[int, int] = (3, 4),
        solarize_threshold: tuple[float, float] = (0.7, 1.0),
    ):
        if alpha != 1.0:
            raise ConfigError(f"aug: augmix_batched draws Dirichlet(1) and Beta(1, 1); got alpha={alpha}")
        if width < 1 or depth not in (-1, *range(1, MAX_DEPTH + 1)):
            raise ConfigError(f"aug: augmix_batched needs width >= 1, depth -1 or 1-3; got {width}, {depth}")
        self.width, self.depth, self.alpha = width, depth, alpha
        self.rotate, self.shear, self.translate = rotate, shear, translate
        self.posterize_bits, self.solarize_threshold = tuple(posterize_bits), tuple(solarize_threshold)
        # per chain: its depth, then an operation and a magnitude for each step; then the weights and m
        self.n_uniforms = width * (1 + 2 * MAX_DEPTH) + width + 1

    def params(self, u: np.ndarray) -> np.ndarray:
        """Per sample and chain: its depth, 3 operation indices, 3 magnitudes in [0, 1); then the chain
        weights and the mixing weight m. (N, `n_uniforms`) float32."""
        n, per = len(u), 1 + 2 * MAX_DEPTH
        chains = u[:, : self.width * per].reshape(n, self.width, per).copy()
        chains[:, :, 0] = np.floor(chains[:, :, 0] * MAX_DEPTH) + 1 if self.depth < 0 else self.depth
        chains[:, :, 1 : 1 + MAX_DEPTH] = np.floor(chains[:, :, 1 : 1 + MAX_DEPTH] * len(OPERATIONS))
        exponentials = -np.log1p(-u[:, self.width * per : self.width * per + self.width])
        weights = exponentials / exponentials.sum(1, keepdims=True)
        m = u[:, -1:]
        return np.concatenate([chains.reshape(n, -1), weights, m], 1).astype(np.float32)

    def __call__(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        x = images.float()
        n, per = len(x), 1 + 2 * MAX_DEPTH
        # The chains side by side, chain-major: (width * n) images, each step once for all of them.
        chains = params[:, : self.width * per].reshape(n, self.width, per).transpose(0, 1).reshape(-1, per)
        weights, m = params[:, self.width * per : -1], params[:, -1]
        out = x.repeat(self.width, 1, 1, 1)
        for step in range(MAX_DEPTH):
            active = chains[:, 0] > step
            if not active.any():
                break
            out = self._step(out, active, chains[:, 1 + step].long(), chains[:, 1 + MAX_DEPTH + step])
        mix = (weights.T[:, :, None, None, None] * out.reshape(self.width, *x.shape)).sum(0)
        m = m[:, None, None, None]
        return (1 - m) * x + m * mix

    def _step(self, x: torch.Tensor, active: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor):
        """Each active sample under the operation it drew, at its magnitude. The five geometric operations
        share one warp: each sample's matrix is its own operation's (on a CPU, five warps of a few images
        each cost more than one of them all)."""
        out = x.clone()
        for k, name in enumerate(OPERATIONS[:GEOMETRIC]):
            chosen = active & (op == k)
            if chosen.any():
                out[chosen] = getattr(self, f"op_{name}")(x[chosen], magnitude[chosen])
        moved = active & (op >= GEOMETRIC)
        if moved.any():
            out[moved] = warp(x[moved], self.theta(op[moved], magnitude[moved]))
        return out

    def theta(self, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        """(n, 2, 3) matrices, output to source in grid_sample's [-1, 1] coordinates, for geometric
        operation indices `op`: a rotation, a shear in x or y, or a translation in x or y."""
        s = 2 * magnitude - 1  # [-1, 1): the operation's range, both ways
        is_op = {name: op == OPERATIONS.index(name) for name in OPERATIONS[GEOMETRIC:]}
        turn = torch.deg2rad(self.rotate * s) * is_op["rotate"]
        shear = torch.tan(torch.deg2rad(self.shear * s))
        shift = 2 * self.translate * s  # a fraction f of the side is 2f here
        theta = torch.zeros(len(op), 2, 3, device=op.device)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(turn), torch.sin(turn)
        theta[:, 1, 0], theta[:, 1, 1] = -torch.sin(turn), torch.cos(turn)
        theta[:, 0, 1] -= shear * is_op["shear_x"]  # the inverse of a shear is the opposite shear
        theta[:, 1, 0] -= shear * is_op["shear_y"]
        theta[:, 0, 2] = -shift * is_op["translate_x"]
        theta[:, 1, 2] = -shift * is_op["translate_y"]
        return theta

    # -- the nine operations (`op_<name>`): float (n, C, H, W) in [0, 255], n magnitudes in [0, 1) -------
    @staticmethod
    def op_autocontrast(x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
        spread = hi - lo
        return torch.where(spread > 0, (x - lo) * (255 / spread.clamp(min=1e-6)), x)

    @staticmethod
    def op_equalize(x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        # OpenCV's equalizeHist per channel: lut = round((cdf - cdf_min) * 255 / (pixels - cdf_min))
        n, c, h, w = x.shape
        q = x.round().clamp(0, 255).long().reshape(n * c, h * w)
        hist = torch.zeros(n * c, 256, device=x.device).scatter_add_(1, q, torch.ones_like(q, dtype=x.dtype))
        cdf = hist.cumsum(1)
        cdf_min = cdf.masked_fill(hist == 0, float("inf")).amin(1, keepdim=True)
        span = h * w - cdf_min
        lut = ((cdf - cdf_min) * 255 / span.clamp(min=1)).round().clamp(0, 255)
        out = torch.where(span > 0, lut.gather(1, q), q.float())  # one grey level: unchanged
        return out.reshape(n, c, h, w)

    def op_posterize(self, x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        lo, hi = self.posterize_bits
        bits = lo + torch.floor(magnitude * (hi - lo + 1)).clamp(max=hi - lo)
        step = (2 ** (8 - bits))[:, None, None, None]
        return torch.floor(x.round().clamp(0, 255) / step) * step

    def op_solarize(self, x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        lo, hi = self.solarize_threshold
        threshold = (255 * (lo + (hi - lo) * magnitude))[:, None, None, None]
        return torch.where(x >= threshold, 255 - x, x)

    def _geometric(self, name: str, x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        op = torch.full((len(x),), OPERATIONS.index(name), device=x.device)
        return warp(x, self.theta(op, magnitude))

    def op_rotate(self, x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        return self._geometric("rotate", x, magnitude)

    def op_shear_x(self, x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        return self._geometric("shear_x", x, magnitude)

    def op_shear_y(self, x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        return self._geometric("shear_y", x, magnitude)

    def op_translate_x(self, x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        return self._geometric("translate_x", x, magnitude)

    def op_translate_y(self, x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        return self._geometric("translate_y", x, magnitude)
