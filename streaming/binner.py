"""Events to voxel grids, in the official EventHDR layout, one pass per event.

Kernels are compiled `nogil` so the reader thread bins while the model thread runs.
"""
import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def voxel_into(out, x, y, t_us, p, num_bins):
    """Zero `out` (2*num_bins, H, W) float32 and accumulate the window's events into it.

    t_norm = (t - t_first) / (t_last - t_first) * (B - 1); each event adds
    max(0, 1 - |t_norm - b|) to bin b of its polarity's grid. Fewer than 3 events give
    zeros. Equal first/last timestamps put every event in bin 0 (the official code divides
    by zero there and poisons the recurrent state with NaN)."""
    flat = out.reshape(-1)
    flat[:] = 0.0
    n = t_us.shape[0]
    if n < 3:
        return
    hw, w = out.shape[1] * out.shape[2], out.shape[2]
    t0 = t_us[0]
    span = t_us[n - 1] - t0
    scale = (num_bins - 1) / span if span > 0 else 0.0
    for i in range(n):
        tn = (t_us[i] - t0) * scale
        b0 = int(tn)  # only bins b0 and b0 + 1 get a non-zero weight
        k = (b0 if p[i] > 0 else num_bins + b0) * hw + np.int64(y[i]) * w + x[i]
        flat[k] += np.float32(1.0 - (tn - b0))  # = 1 - |t_norm - b0|, as tn >= b0
        if b0 + 1 < num_bins:
            w1 = 1.0 - ((b0 + 1) - tn)
            if w1 > 0.0:
                flat[k + hw] += np.float32(w1)


def events_to_voxel(x, y, t_us, p, num_bins, height, width):
    """The (2*num_bins, H, W) float32 grid of one window. Events must lie on the sensor."""
    out = np.empty((2 * num_bins, height, width), np.float32)
    voxel_into(out, np.asarray(x), np.asarray(y), np.asarray(t_us, np.int64), np.asarray(p), num_bins)
    return out
