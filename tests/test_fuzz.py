"""Seeded fuzzing of damaged recordings through every front that reads them: byte flips, random
bytes where HDF5 keeps its metadata, truncations, of an HDF5 and an AEDAT4 recording. Each is
a user's error (one line, status 2) or reads (status 0): never a traceback, never a crash."""

import dv_processing as dv
import numpy as np
import pytest

from streaming.sources.dv import to_event_store
from tests.conftest import run_cli, write_moving_edge

CASES = 5  # per format
# Runs a front's script once per file in one process (a process per run would cost a second of
# imports each): a traceback is printed, a crash ends the process.
DRIVER = """
import runpy, sys, traceback
front, extra, files = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
for f in files:
    sys.argv = [front, f, *(a.replace("FILE", f) for a in extra)]
    print("run", f, file=sys.stderr, flush=True)
    try:
        runpy.run_path(front, run_name="__main__")
    except SystemExit as e:
        print("exit", e.code, file=sys.stderr, flush=True)
    except BaseException:
        traceback.print_exc()
"""
# --max-seconds: a flipped timestamp may open a gap of hours, millions of windows at max
FRONTS = {"run_replay.py": "--model highpass --rate max --max-seconds 1 --publish tcp://127.0.0.1:*",
          "convert.py": "FILE.converted.h5", "evaluate.py": ""}


def write_aedat4(path, events):
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.DAVISConfig("fuzz", (64, 48)))
    for k in range(0, len(events), 500):
        writer.writeEvents(to_event_store(events[k:k + 500]))
    for k in range(1, 8):
        writer.writeFrame(dv.Frame(k * 40000, np.full((48, 64), 30 * k, np.uint8)))
    del writer  # closes the file


def damaged(base: bytes, rng) -> bytes:
    data = bytearray(base)
    how = rng.integers(3)
    if how == 0:  # bit flips anywhere
        for at in rng.integers(0, len(data), 8):
            data[at] ^= 1 << int(rng.integers(8))
    elif how == 1:  # random bytes where HDF5 keeps its metadata
        for at in rng.integers(0, min(len(data), 12288), 16):
            data[at] = int(rng.integers(256))
    else:  # cut short
        del data[int(rng.integers(0, len(data))):]
    return bytes(data)


@pytest.fixture(scope="module")
def damaged_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    events = write_moving_edge(d / "base.h5", seconds=0.3, rate=20000)
    write_aedat4(d / "base.aedat4", events)
    rng = np.random.default_rng(23)
    files = []
    for suffix in (".h5", ".aedat4"):
        base = (d / f"base{suffix}").read_bytes()
        for k in range(CASES):
            files.append(d / f"case{k:02d}{suffix}")
            files[-1].write_bytes(damaged(base, rng))
    return files


@pytest.mark.parametrize("front", FRONTS)
def test_damaged_recordings_give_no_traceback_and_no_crash(damaged_files, front):
    r = run_cli("-c", DRIVER, front, FRONTS[front], *damaged_files, timeout=300)
    assert r.returncode == 0, f"crashed (status {r.returncode}) after: {r.stderr.splitlines()[-3:]}"
    assert "Traceback" not in r.stderr, r.stderr
    runs = r.stderr.split("run ")[1:]
    assert len(runs) == len(damaged_files)
    for run in runs:
        status = run.strip().splitlines()[-1]
        errors = [line for line in run.splitlines() if line.startswith("error:")]
        assert status in ("exit 0", "exit 2") and len(errors) == (status == "exit 2"), run
