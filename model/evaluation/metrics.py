"""Image-quality metrics and the normalisations of the evaluation protocol.

- Official protocol (EventHDR): each sequence, output and ground truth alike, is mapped to
  [0, 1] by its own 1st/99th percentiles (clipped); then PSNR and SSIM (data range 1).
- Log domain: each sequence's log radiance, output and ground truth alike, mapped to [0, 1] by
  its own 1st/99th percentiles (values at or below zero floored first at half the 1st
  percentile of the positive ones: an 8-bit frame's black, a network's negative output); then
  PSNR and SSIM. What a viewer of an HDR picture sees: the dark decades count as the bright ones.
- Linear HDR: the output (relative radiance, unknown scale) is scaled to the ground truth by
  the per-sequence median ratio, both are divided by the ground truth's maximum and
  mu-law compressed (mu = 5000, the usual HDR-imaging convention); then PSNR.
PSNR is capped at 100 dB (MAX_PSNR_DB): a frame reproduced exactly scores 100, not inf.
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

MU = 5000.0
MAX_PSNR_DB = 100.0


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """At most MAX_PSNR_DB: the MSE is floored there, so that one exact frame (a blank output
    on an all-black frame) gives a number, not an inf that makes its sequence's mean inf."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * np.log10(data_range ** 2 / max(mse, data_range ** 2 * 10 ** (-MAX_PSNR_DB / 10)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity(a.astype(np.float64), b.astype(np.float64), data_range=1.0))


def percentile_normalise(seq: np.ndarray) -> np.ndarray:
    p1, p99 = np.percentile(seq, [1, 99])
    return np.clip((seq - p1) / (p99 - p1 + 1e-5), 0, 1)


def log_radiance(seq: np.ndarray) -> np.ndarray:
    """log of a sequence, values at or below zero floored at half the 1st percentile of the positive ones."""
    positive = seq[seq > 0]
    floor = 0.5 * float(np.percentile(positive, 1)) if positive.size else 1.0
    return np.log(np.maximum(seq, floor))


def mu_law(x: np.ndarray) -> np.ndarray:
    return np.log1p(MU * np.clip(x, 0, None)) / np.log1p(MU)


def sequence_metrics(outputs: np.ndarray, truth: np.ndarray) -> dict:
    """outputs, truth: (N, H, W) linear. Returns the per-sequence means of each metric."""
    o, g = percentile_normalise(outputs), percentile_normalise(truth)
    valid = (outputs > 0) & (truth > 0)
    scale = float(np.median(truth[valid] / outputs[valid])) if valid.any() else 1.0
    peak = float(truth.max()) or 1.0
    ho, hg = mu_law(outputs * scale / peak), mu_law(truth / peak)
    lo, lg = percentile_normalise(log_radiance(outputs)), percentile_normalise(log_radiance(truth))
    return {
        "psnr": float(np.mean([psnr(a, b) for a, b in zip(o, g)])),
        "ssim": float(np.mean([ssim(a, b) for a, b in zip(o, g)])),
        "mu_psnr": float(np.mean([psnr(a, b) for a, b in zip(ho, hg)])),
        "log_psnr": float(np.mean([psnr(a, b) for a, b in zip(lo, lg)])),
        "log_ssim": float(np.mean([ssim(a, b) for a, b in zip(lo, lg)])),
    }
