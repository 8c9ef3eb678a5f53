# Hand-written: torchvision can't load beside CPU torch; kornia's blurs aren't imgaug's (odd-only motion, slow median).
"""RDT's training image augmentation, written with numpy and torch (no torchvision, no imgaug).

RDT (``train/dataset.py``, ``train/image_corrupt.py``): for a valid image, with probability 0.5, pick uniformly
one of colour-only, corruption-only or both (colour first). Colour = torchvision-style ColorJitter(brightness 0.3,
contrast 0.4, saturation 0.5, hue 0.03; the four adjustments in random order). Corruption = one additive noise
(Gaussian / Laplace / signed Poisson, scale up to 0.05*255, per channel with probability 0.5) and, in random
order with it, zero or one blur (one of Gaussian sigma 0-3, average kernel 2-7, median kernel 3-11, or a motion
blur of kernel 3-36). RDT's blur sizes are pixels of its 640-pixel-wide camera frames; here they are scaled by
the frame's width / 640 (a 128 px LIBERO frame gets a motion blur of at most 7 px, not 36 px = 28 % of its width),
so a blur hides as much of the scene as it does in RDT. Images are (H, W, 3) uint8 in and out. For speed in the
loader workers the median blur is separable (median of row medians) and the motion blur is the mean of the image
shifted along a line; the filters pad by repeating edge pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

AUG_PROB = 0.5
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0.3, 0.4, 0.5, 0.03
NOISE_SCALE = 0.05 * 255
REFERENCE_WIDTH = 640  # frame width RDT's blur kernel sizes (pixels) are meant for
_GRAY = np.array([0.2989, 0.587, 0.114], dtype=np.float32)


# ------------------------------------------------------------------------------------------------ colour


def _rgb_to_hsv(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channel planes (H,W) in [0,1] -> hue in [0,1), saturation, value."""
    maxc = np.maximum(np.maximum(r, g), b)
    delta = maxc - np.minimum(np.minimum(r, g), b)
    s = delta / np.maximum(maxc, 1e-12)
    safe = np.maximum(delta, 1e-12)
    h = np.where(maxc == r, (g - b) / safe, np.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(delta > 0, h * (1.0 / 6.0), 0.0)
    return h - np.floor(h), s, maxc


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hue in [0,1), saturation, value planes (H,W) -> (3,H,W)."""
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(np.int64) % 6
    return np.stack(
        [np.choose(i, [v, q, p, p, t, v]), np.choose(i, [t, v, v, q, p, p]), np.choose(i, [p, p, t, v, v, q])]
    )


def color_jitter(
    img: np.ndarray,
    rng: np.random.Generator,
    brightness: float = BRIGHTNESS,
    contrast: float = CONTRAST,
    saturation: float = SATURATION,
    hue: float = HUE,
) -> np.ndarray:
    """Random brightness, contrast, saturation and hue changes in random order: (H,W,3) uint8 -> uint8."""
    x = img.astype(np.float32) * np.float32(1 / 255.0)
    factors = {
        "brightness": rng.uniform(max(0.0, 1 - brightness), 1 + brightness),
        "contrast": rng.uniform(max(0.0, 1 - contrast), 1 + contrast),
        "saturation": rng.uniform(max(0.0, 1 - saturation), 1 + saturation),
        "hue": rng.uniform(-hue, hue),
    }
    for op in rng.permutation(list(factors)):
        f = factors[op]
        if op == "brightness":
            x = np.clip(x * f, 0, 1)
        elif op == "contrast":
            mean = float((x @ _GRAY).mean())
            x = np.clip(f * x + (1 - f) * mean, 0, 1)
        elif op == "saturation":
            gray = (x @ _GRAY)[..., None]
            x = np.clip(f * x + (1 - f) * gray, 0, 1)
        else:
            planes = np.ascontiguousarray(x.transpose(2, 0, 1))  # (3,H,W)
            h, sat, val = _rgb_to_hsv(*planes)
            h = h + f
            x = _hsv_to_rgb(h - np.floor(h), sat, val).transpose(1, 2, 0)
    return np.round(x * 255.0).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ corruption


def _noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One additive noise on float (H,W,3) in 0..255."""
    shape = x.shape if rng.random() < 0.5 else x.shape[:2] + (1,)  # per channel with probability 0.5
    kind = rng.integers(3)
    scale = rng.uniform(0, NOISE_SCALE)
    if kind == 0:
        n = rng.normal(0.0, scale, shape)
    elif kind == 1:
        n = rng.laplace(0.0, scale, shape)
    else:
        n = rng.poisson(scale, shape) * rng.choice([-1.0, 1.0], shape)
    return x + n


def _filter(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate each channel of (H,W,3) with a (kh,kw) kernel, replicate padding, same size."""
    kh, kw = kernel.shape
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(2, 0, 1)[:, None]  # (3,1,H,W)
    t = F.pad(t, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2), mode="replicate")
    k = torch.from_numpy(kernel.astype(np.float32))[None, None]
    return F.conv2d(t, k)[:, 0].permute(1, 2, 0).numpy()


def _separable(x: np.ndarray, k1d: np.ndarray) -> np.ndarray:
    """The 2D filter outer(k1d, k1d), as a row pass and a column pass."""
    return _filter(_filter(x, k1d[None, :]), k1d[:, None])


def _shifted(x: np.ndarray, k: int, axis: int) -> np.ndarray:
    """(k, H, W, 3): copies of x shifted by -(k-1)//2 .. k//2 along ``axis`` (edge padding)."""
    pad = [(0, 0)] * 3
    pad[axis] = ((k - 1) // 2, k // 2)
    xp = np.pad(x, pad, mode="edge")
    n = x.shape[axis]
    return np.stack([np.take(xp, np.arange(d, d + n), axis=axis) for d in range(k)])


def _median(x: np.ndarray, k: int) -> np.ndarray:
    """Separable k x k median (median of the row medians): the median blur's effect at a fraction of its cost."""
    return np.median(_shifted(np.median(_shifted(x, k, 1), axis=0), k, 0), axis=0)


def _gaussian_1d(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return g / g.sum()


def _motion(x: np.ndarray, k: int, angle: float) -> np.ndarray:
    """Mean of x shifted along a line of length k through the centre at ``angle`` radians (edge padding)."""
    c = (k - 1) / 2.0
    s = np.linspace(-c, c, k)
    offsets = sorted({(int(round(v * np.sin(angle))), int(round(v * np.cos(angle)))) for v in s})
    r = int(np.ceil(c))
    xp = np.pad(x, ((r, r), (r, r), (0, 0)), mode="edge")
    h, w = x.shape[:2]
    out = np.zeros_like(x)
    for dy, dx in offsets:
        out += xp[r + dy : r + dy + h, r + dx : r + dx + w]
    return out / len(offsets)


def scaled_kernel(k: int, width: int, odd: bool = False) -> int:
    """RDT's kernel size ``k`` (pixels at REFERENCE_WIDTH) for a frame ``width`` pixels wide (>= 1; odd if asked)."""
    size = k * width / REFERENCE_WIDTH
    if odd:
        return max(1, 2 * int(round((size - 1) / 2)) + 1)
    return max(1, int(round(size)))


def _blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zero or one blur (SomeOf(0..1) of [OneOf(Gaussian, average, median), motion]), sizes scaled to the width."""
    if rng.random() < 0.5:
        return x
    width = x.shape[1]
    if rng.random() < 0.5:
        kind = rng.integers(3)
        if kind == 0:
            sigma = rng.uniform(0.0, 3.0) * width / REFERENCE_WIDTH
            return x if sigma < 1e-3 else _separable(x, _gaussian_1d(sigma))
        if kind == 1:
            k = scaled_kernel(int(rng.integers(2, 8)), width)
            return x if k == 1 else _separable(x, np.full(k, 1.0 / k))
        k = scaled_kernel(int(rng.choice([3, 5, 7, 9, 11])), width, odd=True)
        return x if k == 1 else _median(x, k)
    k, angle = scaled_kernel(int(rng.integers(3, 37)), width), rng.uniform(0, 2 * np.pi)
    return x if k == 1 else _motion(x, k, angle)


def corrupt(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Additive noise and an optional blur, in random order: (H,W,3) uint8 -> uint8."""
    x = img.astype(np.float32)
    ops = [_noise, _blur]
    if rng.random() < 0.5:
        ops.reverse()
    for op in ops:
        x = op(x, rng)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def augment(img: np.ndarray, rng: np.random.Generator, prob: float = AUG_PROB) -> np.ndarray:
    """RDT's augmentation of one valid image: with probability ``prob`` colour, corruption or both."""
    if rng.random() >= prob:
        return img
    kind = rng.integers(3)  # 0 corruption only, 1 colour only, 2 both
    if kind != 0:
        img = color_jitter(img, rng)
    if kind != 1:
        img = corrupt(img, rng)
    return img
