"""`basic`'s augmentation applied to the whole batch where the model runs: `aug=basic_batched`.

Albumentations transforms one image at a time on the CPU, in the data loader. For `basic` that costs
~0.26 ms an image, mostly Python around a 30-us warp: close to the strided CNN's training step on two
cores (~0.37 ms an image; benchmarks/results.md), and far slower than any step on a GPU. Albumentations
has no batched or on-device path; Kornia, which has one, is outside this project's stack. So here
`basic`'s three steps become two tensor operations on the batch:

- The data loader draws a batch's parameters at once (`BatchAugmentedDataset`), each sample's from a hash
  of its (seed, epoch, index): the same with any workers, ranks or order, as every augmentation here.
- On the device (`ArrayDataModule.on_after_batch_transfer`), brightness and contrast are computed as
  Albumentations' RandomBrightnessContrast computes them (x * (1 + c) + b * 255, clipped). Then the affine
  (shear, rotation, translation about the centre) and the random resized crop are folded into one matrix
  per sample, applied with one `grid_sample`: bilinear, edges replicated as `basic`'s border_mode=1.

Departures from the Albumentations preset: pixels stay float between the steps (no rounding to uint8);
translation is not truncated to whole pixels; a crop window wider than the image is clipped, not redrawn;
shear and translation are drawn per axis.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PARAMS = 8  # per sample: contrast factor, brightness offset, the 2 x 3 matrix grid_sample reads
UNIFORMS = 14  # per sample: three gates, two colour draws, five affine, four crop

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer (Steele et al. 2014), on uint64 arrays (wrapping as it should)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, epoch: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """(N, n) uniforms in [0, 1), a function of (seed, epoch, index) alone: a sample's draws are the same
    in any batch, worker, rank or order. A counter-based hash instead of a generator per sample (what the
    Albumentations path seeds, 12-28 us each) so that a batch's draws are a few array operations."""
    with np.errstate(over="ignore"):
        key = _mix(np.uint64(seed & (2**64 - 1)) ^ _mix(np.asarray(epoch, np.uint64)))
        key = _mix(key ^ np.asarray(index, np.uint64))
        bits = _mix(key[:, None] + np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


class BatchTransform:
    """An augmentation applied to the whole batch on the device. The loader draws `n_uniforms` per sample
    (`uniforms`) and turns them into parameters (`params`, numpy, float32 rows); `__call__` takes the
    uint8 (N, C, H, W) batch and those rows, on the device, and returns float images in [0, 255]."""

    n_uniforms: int

    def params(self, u: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class BatchAffine(BatchTransform):
    """Per-sample random brightness/contrast, affine and resized crop, for uint8 NCHW batches.

    Ranges are symmetric: contrast and brightness in [-x, x] (fractions; brightness of 255), `translate`
    a fraction of the side, `shear` and `rotate` in degrees. Each of the three steps fires with its `p_`.
    A plain class, not a dataclass: Hydra would turn a dataclass passed to `instantiate` into a config.
    """

    def __init__(
        self,
        brightness: float = 0.2,
        contrast: float = 0.2,
        p_colour: float = 0.8,
        translate: float = 0.1,
        shear: float = 15.0,
        rotate: float = 20.0,
        p_affine: float = 0.8,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        crop_ratio: tuple[float, float] = (0.9, 1.1),
        p_crop: float = 0.5,
    ):
        self.brightness, self.contrast, self.p_colour = brightness, contrast, p_colour
        self.translate, self.shear, self.rotate, self.p_affine = translate, shear, rotate, p_affine
        self.crop_scale, self.crop_ratio, self.p_crop = tuple(crop_scale), tuple(crop_ratio), p_crop
        self.n_uniforms = UNIFORMS

    def params(self, u: np.ndarray) -> np.ndarray:
        """(N, `UNIFORMS`) uniforms -> (N, `PARAMS`) float32 parameters, one row per sample."""
        sym = 2 * u - 1  # the same draws, mapped to [-1, 1)
        colour, affine, crop = u[:, 0] < self.p_colour, u[:, 3] < self.p_affine, u[:, 9] < self.p_crop
        alpha = np.where(colour, 1 + self.contrast * sym[:, 1], 1.0)
        beta = np.where(colour, 255 * self.brightness * sym[:, 2], 0.0)
        # The affine in grid_sample's [-1, 1] coordinates: forward = rotation @ shear_x @ shear_y, plus a
        # shift (a fraction f of the side is 2f here); off, it is the identity.
        sx, sy = (np.where(affine, np.tan(np.radians(self.shear * sym[:, k])), 0.0) for k in (4, 5))
        turn = np.where(affine, np.radians(self.rotate * sym[:, 6]), 0.0)
        shift = np.where(affine[:, None], 2 * self.translate * sym[:, 7:9], 0.0)
        cos, sin = np.cos(turn), np.sin(turn)
        rotation_inv = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
        shear_inv = np.stack([np.stack([np.ones_like(sx), -sx], -1), np.stack([-sy, 1 + sx * sy], -1)], -2)
        inverse = shear_inv @ rotation_inv  # (shear_y^-1 @ shear_x^-1) @ rotation^-1
        # The crop: a window of `area` and aspect `ratio` (log-uniform), anywhere it fits; its half-size
        # and centre in the same coordinates. Off, the window is the whole image.
        area = self.crop_scale[0] + (self.crop_scale[1] - self.crop_scale[0]) * u[:, 10]
        lo, hi = np.log(self.crop_ratio[0]), np.log(self.crop_ratio[1])
        ratio = np.exp(lo + (hi - lo) * u[:, 11])
        window = np.minimum(1.0, np.stack([np.sqrt(area * ratio), np.sqrt(area / ratio)], -1))
        window = np.where(crop[:, None], window, 1.0)
        centre = (1 - window) * sym[:, 12:14]
        # output point p -> window point q = window * p + centre -> source point inverse @ (q - shift)
        theta = np.concatenate([inverse * window[:, None, :], (inverse @ (centre - shift)[..., None])], -1)
        return np.concatenate([alpha[:, None], beta[:, None], theta.reshape(-1, 6)], 1).astype(np.float32)

    def __call__(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) images and their (N, `PARAMS`) parameters -> float images in [0, 255]."""
        x = images.float()
        alpha, beta = params[:, 0, None, None, None], params[:, 1, None, None, None]
        x = (x * alpha + beta).clamp_(0, 255)
        return warp(x, params[:, 2:].reshape(-1, 2, 3))


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Float (N, C, H, W) images sampled at `theta` (N, 2, 3: output to source, grid_sample's [-1, 1]
    coordinates): bilinear, edges replicated as Albumentations' border_mode=1."""
    grid = sampling_grid(theta, *x.shape[2:])
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, (N, C, height, width), align_corners=False)`, as two broadcast multiply-adds.

    affine_grid multiplies a (N, H * W, 3) base grid by theta in a batched matmul with an inner size of 3:
    on a CPU that took longer than the `grid_sample` itself (3.1 ms against 2.1 ms for 128 images of
    64 px, 2 threads); these multiply-adds took 0.5 ms. tests/test_batch_augment.py compares the two.
    """
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    t = theta[:, :, :, None, None]  # (N, 2, 3, 1, 1) against (H, 1) rows and (W,) columns
    gx = t[:, 0, 0] * xs + t[:, 0, 1] * ys[:, None] + t[:, 0, 2]
    gy = t[:, 1, 0] * xs + t[:, 1, 1] * ys[:, None] + t[:, 1, 2]
    return torch.stack([gx, gy], dim=-1)
