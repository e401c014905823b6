"""`basic`'s augmentation applied to the whole batch where the model runs: `aug=basic_batched`.

Albumentations transforms one image at a time on the CPU, in the data loader. For `basic` that costs
~0.26 ms an image, mostly Python around a 30-us warp: slower than the strided CNN's training step on two
cores (benchmarks/results.md), and far slower than any step on a GPU. Albumentations has no batched or
on-device path; Kornia, which has one, is outside this project's stack. So here `basic`'s three steps
become two tensor operations on the batch:

- Each sample's parameters are drawn in the data loader from the sample's own (seed, epoch, index)
  generator (`AugmentedDataset`), as every augmentation here is: the same with any workers, ranks or order.
- On the device (`ArrayDataModule.on_after_batch_transfer`), brightness and contrast are computed as
  Albumentations' RandomBrightnessContrast computes them (x * (1 + c) + b * 255, clipped). Then the affine
  (shear, rotation, translation about the centre) and the random resized crop are folded into one matrix
  per sample, applied with one `grid_sample`: bilinear, edges replicated as `basic`'s border_mode=1.

Departures from the Albumentations preset: pixels stay float between the steps (no rounding to uint8);
translation is not truncated to whole pixels; a crop window wider than the image is clipped, not redrawn;
shear and translation are drawn per axis.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

PARAMS = 8  # per sample: contrast factor, brightness offset, the 2 x 3 matrix grid_sample reads


class BatchAffine:
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

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"BatchAffine({args})"

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One sample's parameters (float32, `PARAMS` of them), from fourteen uniforms drawn at once."""
        u = rng.random(14)
        sym = 2 * u - 1  # the same draws, mapped to [-1, 1)
        alpha, beta = 1.0, 0.0
        if u[0] < self.p_colour:
            alpha, beta = 1 + self.contrast * sym[1], 255 * self.brightness * sym[2]
        forward, shift = np.eye(2), np.zeros(2)  # the affine, in grid_sample's [-1, 1] coordinates
        if u[3] < self.p_affine:
            sx, sy = (math.tan(math.radians(self.shear * s)) for s in sym[4:6])
            turn = math.radians(self.rotate * sym[6])
            rot = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
            forward = rot @ np.array([[1, sx], [0, 1]]) @ np.array([[1, 0], [sy, 1]])
            shift = 2 * self.translate * sym[7:9]  # a fraction f of the side is 2f here
        window, centre = np.ones(2), np.zeros(2)  # the crop: its half-size and centre, same coordinates
        if u[9] < self.p_crop:
            area = self.crop_scale[0] + (self.crop_scale[1] - self.crop_scale[0]) * u[10]
            lo, hi = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
            ratio = math.exp(lo + (hi - lo) * u[11])
            window = np.minimum(1.0, [math.sqrt(area * ratio), math.sqrt(area / ratio)])
            centre = (1 - window) * sym[12:14]  # anywhere the window fits inside the image
        # output point p -> window point q = window * p + centre -> source point inverse(forward) (q - shift)
        inverse = np.linalg.inv(forward)
        theta = np.concatenate([inverse * window, (inverse @ (centre - shift))[:, None]], axis=1)
        return np.concatenate([[alpha, beta], theta.ravel()]).astype(np.float32)

    def __call__(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) images and their (N, `PARAMS`) parameters -> float images in [0, 255]."""
        x = images.float()
        alpha, beta = params[:, 0, None, None, None], params[:, 1, None, None, None]
        x = (x * alpha + beta).clamp_(0, 255)
        grid = F.affine_grid(params[:, 2:].reshape(-1, 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
