"""How fast recordings are read: Prophesee RAW (EVT 3.0, EVT 2.0) and DAT against our HDF5.

    python -m bench.formats [--repeat 20]

For each Prophesee file in tests/data/prophesee, in the same run: the time to read all its
events through its source (PropheseeSource: Numba decoding), and the time to read the same
events through H5Source from an HDF5 file they were written to (the format of the EventHDR
dataset). Best of --repeat full reads, one thread. Prints Mev/s and the ratio Prophesee / HDF5:
above 1, the Prophesee file is read faster than the same events in HDF5.
"""
import argparse
import tempfile
import time
from pathlib import Path

from bench.args import positive_int
from streaming.datatypes import EventPacket
from streaming.exits import run_main
from streaming.h5format import EventH5Writer
from streaming.sources.hdf5 import H5Source
from streaming.sources.prophesee import PropheseeSource

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "prophesee"
FILES = {"evt3_wrap.raw": None, "gen4_wrap.dat": None, "evt2_start.raw": (480, 640)}


def read_all(open_source) -> EventPacket:
    src = open_source()
    try:
        return EventPacket.concat(list(src))
    finally:
        src.close()


def best_seconds(fn, repeat: int) -> float:
    fn()  # untimed: compiles and fills the caches, which a best of few would otherwise count
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=positive_int, default=20)
    repeat = ap.parse_args().repeat
    print(f"reading every event of a file, best of {repeat}, one thread")
    print(f"{'file':<16}{'events':>9}{'Prophesee Mev/s':>17}{'HDF5 Mev/s':>12}{'Prophesee/HDF5':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in FILES.items():
            def prophesee():
                return read_all(lambda: PropheseeSource(DATA / name, size))
            ev = prophesee()  # also compiles the decoder
            h5 = Path(tmp) / f"{name}.h5"
            src = PropheseeSource(DATA / name, size)
            with EventH5Writer(h5, src.height, src.width) as w:
                w.add_events(ev)
            src.close()
            t_prophesee = best_seconds(prophesee, repeat)
            t_h5 = best_seconds(lambda: read_all(lambda: H5Source(h5)), repeat)
            n = len(ev)
            print(f"{name:<16}{n:>9,}{n / t_prophesee / 1e6:>17.1f}{n / t_h5 / 1e6:>12.1f}"
                  f"{t_h5 / t_prophesee:>16.1f}")


if __name__ == "__main__":
    run_main(main)
