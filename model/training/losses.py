"""Training losses: structure in both domains, blind to what events cannot tell.

Events fix log radiance only up to an offset (an unknown exposure), so every term is blind to
a constant factor of radiance: L1 on log radiance compares the two after removing each frame's
mean difference, and the SSIM and squared-error terms compare images each mapped to [0, 1] by
its own 1st/99th percentiles, as the evaluation maps a sequence (model.evaluation.metrics), in the log
domain (what a viewer sees of the dark decades) and in the linear one (the official protocol).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOG_EPS = 1e-3  # ground truth is divided by its 99th percentile: the log target floors 3 decades below
LINEAR_FLOOR = 1e-4  # the log of a network whose output is linear (and may be negative) floors here
WEIGHTS = {"log_l1": 1.0, "log_ssim": 1.0, "linear_ssim": 0.5, "linear_mse": 1.0, "temporal": 0.5}


def ssim_loss(a, b, c1=1e-4, c2=9e-4):
    """1 - SSIM with a 7x7 box window, on values above 1 clipped as the official protocol does."""
    a, b = a.clamp(max=1), b.clamp(max=1)
    pool = lambda z: F.avg_pool2d(z, 7, 1, 3, count_include_pad=False)  # noqa: E731
    ma, mb = pool(a), pool(b)
    va, vb, cov = pool(a * a) - ma ** 2, pool(b * b) - mb ** 2, pool(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    return 1 - s.mean()


def protocol_normalise(x):
    """The official evaluation's mapping (model.metrics.percentile_normalise) on each crop: its
    own 1st and 99th percentiles to 0 and 1, clipped. Differentiable through the percentiles."""
    q = torch.quantile(x.flatten(1), x.new_tensor([0.01, 0.99]), dim=1).view(2, -1, 1, 1, 1)
    return ((x - q[0]) / (q[1] - q[0] + 1e-5)).clamp(0, 1)


def frame_loss(out, truth, log_output: bool):
    """(the loss of one output, its log error less the error's mean, for temporal_loss).

    out (N, 1, H, W): log radiance (log_output) or linear radiance; truth: linear, >= 0."""
    log_out = out if log_output else torch.log(out.clamp(min=LINEAR_FLOOR))
    linear = out.exp() if log_output else out
    log_truth = torch.log(truth + LOG_EPS)
    error = log_out - log_truth
    error = error - error.mean((2, 3), keepdim=True)
    mapped_linear, mapped_truth = protocol_normalise(linear), protocol_normalise(truth)
    loss = WEIGHTS["log_l1"] * error.abs().mean() \
        + WEIGHTS["log_ssim"] * ssim_loss(protocol_normalise(log_out), protocol_normalise(log_truth)) \
        + WEIGHTS["linear_ssim"] * ssim_loss(mapped_linear, mapped_truth) \
        + WEIGHTS["linear_mse"] * F.mse_loss(mapped_linear, mapped_truth)
    return loss, error


def temporal_loss(error, prev_error):
    """Consecutive outputs should change as the ground truth does: their errors (offsets removed) alike."""
    return WEIGHTS["temporal"] * (error - prev_error).abs().mean()
