"""The high-pass filter (the default model) against its textbook form, in the same run.

    python -m bench.highpass [--repeat 3]

HighPassFilter keeps L * exp(alpha * (t - t_ref)) per pixel, so an event costs one add and an
exp() per distinct timestamp, and a frame one exp() per pixel that saw an event; the textbook
form (TextbookHighPass) keeps a time per pixel, an exp() per event and two per pixel and frame.
Same frames (tests/test_highpass.py). On the street recording (DAVIS346, 25 ms windows), the
IMX636 clip in tests/data/prophesee (1280x720) and a dense random stream at 1280x720
(20 Mev/s for 0.25 s): ms per window, best of --repeat passes, one thread, and the ratio
textbook / ours.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from bench.args import positive_int
from model.highpass import HighPassFilter, TextbookHighPass
from streaming.datatypes import EventPacket, VoxelWindow
from streaming.exits import run_main
from streaming.offline import voxel_windows
from streaming.sources.open import open_recording
from streaming.windows import Cut, WindowPolicy

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = {"street 346x260": REPO.parent / "shared" / "data" / "davis346_street.aedat4",
              "IMX636 1280x720": REPO / "tests" / "data" / "prophesee" / "evt3_wrap.raw"}


def recording_windows(path: Path) -> tuple[list[VoxelWindow], int, int]:
    src = open_recording(str(path))
    windows = list(voxel_windows(src, WindowPolicy(Cut.MS, ms=25), 5))
    src.close()
    return windows, src.height, src.width


def dense_windows(height=720, width=1280, rate=20e6, seconds=0.25) -> list[VoxelWindow]:
    rng = np.random.default_rng(0)
    n, span = int(rate * seconds), int(seconds * 1e6)
    t = np.sort(rng.integers(0, span, n)).astype(np.int64)
    ev = EventPacket(t, rng.integers(0, width, n).astype(np.uint16), rng.integers(0, height, n).astype(np.uint16),
                     rng.choice(np.array([-1, 1], np.int8), n))
    edges = np.searchsorted(t, np.arange(0, span + 1, 25_000))
    return [VoxelWindow(k, k * 25_000, (k + 1) * 25_000, None, ev[a:b])
            for k, (a, b) in enumerate(zip(edges, edges[1:]))]


def ms_per_window(model, windows: list[VoxelWindow], repeat: int) -> float:
    model.push(windows[0])  # compiles
    best = float("inf")
    for _ in range(repeat):
        model.reset()
        t0 = time.perf_counter()
        for w in windows:
            model.push(w)
        best = min(best, time.perf_counter() - t0)
    return best / len(windows) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=positive_int, default=3)
    repeat = ap.parse_args().repeat
    cases = {name: recording_windows(path) for name, path in RECORDINGS.items() if path.exists()}
    for name, path in RECORDINGS.items():
        if not path.exists():  # the team's shared/data folder, beside the repository: not in every clone
            print(f"{name}: skipped, {path} is not here")
    cases["random 1280x720, 20 Mev/s"] = dense_windows(), 720, 1280
    print(f"high-pass filter, ms per 25 ms window, best of {repeat}, one thread")
    print(f"{'input':<28}{'events/window':>14}{'ours':>8}{'textbook':>10}{'textbook/ours':>15}")
    for name, (windows, h, w) in cases.items():
        ours = ms_per_window(HighPassFilter(h, w), windows, repeat)
        textbook = ms_per_window(TextbookHighPass(h, w), windows, repeat)
        per_window = sum(x.n_events for x in windows) / len(windows)
        print(f"{name:<28}{per_window:>14,.0f}{ours:>8.2f}{textbook:>10.2f}{textbook / ours:>15.1f}")


if __name__ == "__main__":
    run_main(main)
