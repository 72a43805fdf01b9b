"""Binner throughput: our Numba kernel against the usual numpy and torch formulations.

    python -m bench.binner [--events 2000000]

References, measured in the same run on the same events (346x260, 5 bins):
- numpy: E2VID-style `np.add.at` into the two neighbouring bins of each event;
- torch: the same arithmetic with `index_add_` on a flat tensor.
Prints events/s of each and our speed-up over them.
"""
import argparse
import time

import numpy as np
import torch

from bench.args import positive_int
from streaming.binner import events_to_voxel
from streaming.exits import run_main

H, W, B = 260, 346, 5


def numpy_add_at(x, y, t, p, num_bins, height, width):
    grid = np.zeros(2 * num_bins * height * width, np.float32)
    tn = (t - t[0]) * ((num_bins - 1) / (t[-1] - t[0]))
    left = tn.astype(np.int64)
    base = np.where(p > 0, 0, num_bins) * height * width + y.astype(np.int64) * width + x
    for b, w in ((left, 1.0 - (tn - left)), (left + 1, tn - left)):
        ok = b < num_bins
        np.add.at(grid, base[ok] + b[ok] * height * width, w[ok].astype(np.float32))
    return grid.reshape(2 * num_bins, height, width)


def torch_index_add(x, y, t, p, num_bins, height, width):
    x, y, t, p = (torch.from_numpy(a.astype(np.int64)) for a in (x, y, t, p))
    grid = torch.zeros(2 * num_bins * height * width)
    tn = (t - t[0]).double() * ((num_bins - 1) / float(t[-1] - t[0]))
    left = tn.long()
    base = torch.where(p > 0, 0, num_bins) * height * width + y * width + x
    for b, w in ((left, 1.0 - (tn - left)), (left + 1, tn - left)):
        ok = b < num_bins
        grid.index_add_(0, base[ok] + b[ok] * height * width, w[ok].float())
    return grid.reshape(2 * num_bins, height, width).numpy()


def best_of(fn, args, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=positive_int, default=2_000_000)
    ap.add_argument("--repeat", type=positive_int, default=3)
    n = ap.parse_args().events
    rng = np.random.default_rng(0)
    args = (rng.integers(0, W, n).astype(np.uint16), rng.integers(0, H, n).astype(np.uint16),
            np.sort(rng.integers(0, 50_000, n)).astype(np.int64), rng.choice(np.array([-1, 1], np.int8), n), B, H, W)
    events_to_voxel(*args)  # compile
    repeat = ap.parse_args().repeat
    ours, grid = best_of(events_to_voxel, args, repeat)
    rows = [("numba (ours)", ours, grid)]
    for name, fn in (("numpy np.add.at", numpy_add_at), ("torch index_add_", torch_index_add)):
        t, ref = best_of(fn, args, repeat)
        np.testing.assert_allclose(grid, ref, rtol=1e-4, atol=1e-3)  # the same grid, or the race is void
        rows.append((name, t, ref))
    print(f"{n:,} events, HxW {H}x{W}, {B} bins, best of {repeat}, torch threads {torch.get_num_threads()}")
    for name, t, _ in rows:
        print(f"  {name:18s} {t * 1e3:8.1f} ms  {n / t / 1e6:8.1f} Mev/s  its time / ours {t / ours:6.1f}")


if __name__ == "__main__":
    run_main(main)
