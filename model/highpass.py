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
MAX_GAIN_EXP = 20.0  # the state is rebased before its gain exp(alpha * (t - t_ref)) passes exp(20)
NEGLIGIBLE = 1e-20  # |L| below this shows as exactly 1.0 in float32; flushed so that it never goes subnormal


@numba.njit(nogil=True, cache=True)
def _rebase(m, decay):
    flat = m.reshape(-1)
    for i in range(flat.size):
        v = flat[i] * decay
        flat[i] = v if abs(v) >= NEGLIGIBLE else 0.0


@numba.njit(nogil=True, cache=True)
def _filter_events(m, t_ref, x, y, t_us, p, alpha_us, contrast, rebase_us):
    """m = L * exp(alpha * (t - t_ref)) is constant between a pixel's events (the decay and the
    gain cancel), so an event only adds contrast * p * gain(t), the same gain for every event of
    one timestamp: no per-pixel time, and no exp() per event in a dense stream. Returns t_ref."""
    t_gain, gain = t_ref, 1.0
    for i in range(t_us.shape[0]):
        t = t_us[i]
        if t != t_gain:
            if t - t_ref > rebase_us:  # a long window: keep the gain finite
                _rebase(m, math.exp(-alpha_us * (t - t_ref)))
                t_ref = t
            t_gain, gain = t, math.exp(alpha_us * (t - t_ref))
        m[y[i], x[i]] += contrast * p[i] * gain
    return t_ref


@numba.njit(nogil=True, cache=True)
def _render(m, decay, out):
    """Rebase m to the window's end (m becomes L there), and out = exp(L), clipped."""
    _rebase(m, decay)
    flat, o = m.reshape(-1), out.reshape(-1)
    for i in range(flat.size):
        v = flat[i]  # most pixels of a sparse scene are 0 (flushed): skip their exp()
        o[i] = 1.0 if v == 0.0 else math.exp(min(max(v, -LOG_LIMIT), LOG_LIMIT))


class HighPassFilter:
    lookahead = 0
    uses_grid = False  # it works per event

    def __init__(self, height: int, width: int, cutoff_hz: float = 0.5, contrast: float = 0.2):
        self.alpha_us = 2 * math.pi * cutoff_hz * 1e-6
        self.contrast = contrast
        self._m = np.zeros((height, width), np.float64)  # L at _t_ref, between pushes
        # at 0.5 Hz every 6.4 s of a window; an integer, so that the per-timestamp test is cheap
        self._rebase_us = int(MAX_GAIN_EXP / self.alpha_us) if self.alpha_us > 0 else np.iinfo(np.int64).max
        self._t_ref: int | None = None

    def push(self, window: VoxelWindow) -> np.ndarray:
        ev = window.events
        t_ref = window.t_start_us if self._t_ref is None else self._t_ref
        t_ref = _filter_events(self._m, t_ref, ev.x, ev.y, ev.t, ev.p, self.alpha_us, self.contrast,
                               self._rebase_us)
        out = np.empty(self._m.shape, np.float32)
        _render(self._m, math.exp(-self.alpha_us * (window.t_end_us - t_ref)), out)
        self._t_ref = window.t_end_us
        return out

    def reset(self) -> None:
        self._m[:] = 0.0
        self._t_ref = None


@numba.njit(nogil=True, cache=True)
def _textbook_events(log_i, t_last, x, y, t_us, p, alpha_us, contrast):
    for i in range(t_us.shape[0]):
        yy, xx = y[i], x[i]
        log_i[yy, xx] = math.exp(-alpha_us * (t_us[i] - t_last[yy, xx])) * log_i[yy, xx] + contrast * p[i]
        t_last[yy, xx] = t_us[i]


@numba.njit(nogil=True, cache=True)
def _textbook_render(log_i, t_last, t_us, alpha_us, out):
    for yy in range(log_i.shape[0]):
        for xx in range(log_i.shape[1]):
            log_now = math.exp(-alpha_us * (t_us - t_last[yy, xx])) * log_i[yy, xx]
            out[yy, xx] = math.exp(min(max(log_now, -LOG_LIMIT), LOG_LIMIT))


class TextbookHighPass(HighPassFilter):
    """The filter as the formula reads: a time per pixel, an exp() per event and two per pixel
    and frame. The reference that tests and bench.highpass hold HighPassFilter to."""

    def __init__(self, height: int, width: int, cutoff_hz: float = 0.5, contrast: float = 0.2):
        super().__init__(height, width, cutoff_hz, contrast)
        self._t_last = np.zeros((height, width), np.int64)

    def push(self, window: VoxelWindow) -> np.ndarray:
        ev = window.events
        _textbook_events(self._m, self._t_last, ev.x, ev.y, ev.t, ev.p, self.alpha_us, self.contrast)
        out = np.empty(self._m.shape, np.float32)
        _textbook_render(self._m, self._t_last, window.t_end_us, self.alpha_us, out)
        return out

    def reset(self) -> None:
        super().reset()
        self._t_last[:] = 0
