"""Linear HDR frames to 8-bit pictures.

CausalToneMapper is for live previews: it looks only at the past (smoothed log-domain
percentiles), so it can run frame by frame. official_postprocess is EventHDR's published
per-sequence mapping, for comparison pictures: it needs the whole sequence.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-6


class CausalToneMapper:
    """Log-domain mapping between exponentially smoothed 1st/99th percentiles."""

    def __init__(self, smoothing: float = 0.9, low: float = 1.0, high: float = 99.0):
        self.smoothing, self.low, self.high = smoothing, low, high
        self._range: np.ndarray | None = None
        self._log: np.ndarray | None = None  # reused: a fresh 1280x720 array a frame costs its page faults

    def __call__(self, linear: np.ndarray) -> np.ndarray:
        """An unbounded model may emit inf or NaN: such pixels stay out of the statistics (one
        would poison the smoothed range for the rest of the run) and show as white and black.
        In place and in float32: at 1280x720, a fresh array per step (and a float64 range
        scalar, which makes every step float64) took three times as long."""
        if self._log is None or self._log.shape != linear.shape:
            self._log = np.empty(linear.shape, np.float32)
        log = self._log
        np.log(np.maximum(linear, np.float32(EPS), out=log), out=log)
        sample = log[::4, ::4] if log.size > 4096 else log
        sample = sample[np.isfinite(sample)]
        if sample.size:
            lo_hi = np.percentile(sample, [self.low, self.high])
            self._range = lo_hi if self._range is None else \
                self.smoothing * self._range + (1 - self.smoothing) * lo_hi
        if self._range is None:
            return np.zeros(linear.shape, np.uint8)
        lo, hi = self._range.astype(np.float32)
        span = max(hi - lo, np.float32(1e-3))
        # centred: a flat frame (the filter's, before the first events) shows mid-grey, not black
        log -= (lo + hi - span) / 2
        log *= np.float32(255.0) / span
        np.clip(log, 0.0, 255.0, out=log)  # NaN stays NaN until the next line
        np.nan_to_num(log, copy=False, nan=0.0)
        log += np.float32(0.5)
        return log.astype(np.uint8)

    def reset(self) -> None:
        self._range = None


def official_postprocess(frames: np.ndarray) -> np.ndarray:
    """EventHDR's published post-processing of a whole sequence (N, H, W) -> uint8."""
    p1, p99 = np.percentile(frames, [1, 99])
    n = np.clip((frames - p1) / (p99 - p1 + 1e-5), 0, 1)
    v = (n * 65535).astype(np.uint16).astype(np.float64)
    return ((v / 30000) / (1 + v / 30000) * 255).astype(np.uint8)
