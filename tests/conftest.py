import os
import select
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streaming.datatypes import EventPacket
from streaming.h5format import EventH5Writer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
STREET_AEDAT4 = SHARED_DATA / "davis346_street.aedat4"
# a clone without the team's shared/ beside it (a user's) skips the tests on the real recording
needs_street = pytest.mark.skipif(not STREET_AEDAT4.exists(), reason=f"{STREET_AEDAT4} is missing")
DVSERVER = REPO / "tests" / "dvserver.py"
WAIT_S = 15  # generous: the machine is shared
TINY = {"num_feat": 4, "deformable_groups": 1, "num_extract_block": 1, "num_reconstruct_block": 1}  # a network arch


def write_moving_edge(path, seconds=1.0, height=48, width=64, frame_us=40000, rate=60000, seed=0):
    """A real recording in the EventHDR layout: a vertical edge sweeping across the sensor,
    with an intensity image every frame_us. Returns the events written."""
    rng = np.random.default_rng(seed)
    packets = []
    with EventH5Writer(path, height, width) as w:
        for k in range(int(seconds * 1e6 / frame_us)):
            n = int(rate * frame_us / 1e6)
            t = np.sort(rng.integers(k * frame_us, (k + 1) * frame_us, n)).astype(np.int64)
            x = ((t * 1e-6 * 40 + rng.normal(0, 1, n)) % width).astype(np.uint16)
            ev = EventPacket(t, x, rng.integers(0, height, n).astype(np.uint16),
                             rng.choice(np.array([-1, 1], np.int8), n))
            w.add_events(ev)
            packets.append(ev)
            img = np.tile(np.linspace(0, 65535, width).astype(np.uint16), (height, 1))
            w.add_image((k + 1) * frame_us, img)
    return EventPacket.concat(packets)


@pytest.fixture
def edge_h5(tmp_path):
    path = tmp_path / "edge.h5"
    write_moving_edge(path)
    return path


def run_cli(*args, timeout=120):
    """Run a front (run_replay.py, run_live.py) as a user would."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dvserver():
    """Start tests/dvserver.py on a free port; yields (port, process). Never outlives the test."""
    procs = []

    def start(*args: str) -> tuple[int, subprocess.Popen]:
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(DVSERVER), str(port), *args],
                                stdout=subprocess.PIPE, text=True, cwd=REPO)
        procs.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], WAIT_S)
        assert ready and proc.stdout.readline().strip() == "ready", "dvserver did not start"
        return port, proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of 4 MiB, a tmpfs: full disks are tried on it. Mounting one needs root
    (or a user namespace): elsewhere the test is skipped."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def fill(disk, leave_kib: int) -> None:
    """Fill the disk but leave_kib KiB."""
    st = os.statvfs(disk)
    (disk / "filler").write_bytes(bytes(max(st.f_bavail * st.f_frsize - leave_kib * 1024, 0)))
