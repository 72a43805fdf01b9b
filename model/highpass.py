"""The classical baseline: Scheerlinck et al.'s per-event high-pass filter (ACCV 2018).

Each pixel keeps a log-intensity estimate L that every event steps by ±contrast and that
decays towards zero at `cutoff_hz` between events:
    L <- exp(-2*pi*cutoff*(t - t_last)) * L + contrast * p.
Exact per event (the "HF" row of the EventHDR paper); needs no weights. Output: exp(L),
linear relative radiance, with L clipped to +-LOG_LIMIT where a pixel has run away (a hot pixel
firing ON thousands of times a second outruns the decay): 35 decades either way, more than any
scene, and exp() stays finite in float32.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from streaming.datatypes import VoxelWindow

LOG_LIMIT = 80.0  # float32 overflows past exp(88.7)


@numba.njit(nogil=True, cache=True)
def _filter_events(log_i, t_last, x, y, t_us, p, alpha, contrast):
    for i in range(t_us.shape[0]):
        yy, xx = y[i], x[i]
        dt = (t_us[i] - t_last[yy, xx]) * 1e-6
        log_i[yy, xx] = math.exp(-alpha * dt) * log_i[yy, xx] + contrast * p[i]
        t_last[yy, xx] = t_us[i]


@numba.njit(nogil=True, cache=True)
def _render(log_i, t_last, t_us, alpha, out):
    for yy in range(log_i.shape[0]):
        for xx in range(log_i.shape[1]):
            log_now = math.exp(-alpha * (t_us - t_last[yy, xx]) * 1e-6) * log_i[yy, xx]
            out[yy, xx] = math.exp(min(max(log_now, -LOG_LIMIT), LOG_LIMIT))


class HighPassFilter:
    lookahead = 0
    uses_grid = False  # it works per event

    def __init__(self, height: int, width: int, cutoff_hz: float = 0.5, contrast: float = 0.2):
        self.alpha = 2 * math.pi * cutoff_hz
        self.contrast = contrast
        self._log = np.zeros((height, width), np.float64)
        self._t_last = np.zeros((height, width), np.int64)

    def push(self, window: VoxelWindow) -> np.ndarray:
        ev = window.events
        _filter_events(self._log, self._t_last, ev.x, ev.y, ev.t, ev.p, self.alpha, self.contrast)
        out = np.empty(self._log.shape, np.float32)
        _render(self._log, self._t_last, window.t_end_us, self.alpha, out)
        return out

    def reset(self) -> None:
        self._log[:] = 0.0
        self._t_last[:] = 0
