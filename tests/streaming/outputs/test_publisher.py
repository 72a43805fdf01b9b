"""The ZeroMQ publisher and its consumers: subscribers in other processes, the example subscriber,
the stats messages' strict JSON, a port in use."""
import json
import os
import subprocess
import sys

import h5py
import pytest

from streaming.outputs.protocol import encode_stats
from streaming.stats import RunStats
from tests.conftest import REPO, free_port, run_cli, write_moving_edge


def test_subscribers_in_other_processes_receive_every_frame(tmp_path):
    """Two subscribers to the same topics: XPUB passes on only the first subscription to a
    topic, so --wait-subscribers 2 must count connections, not subscriptions."""
    write_moving_edge(tmp_path / "r.h5", seconds=1.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subs = [subprocess.Popen([sys.executable, "examples/subscribe.py", address], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        r = run_cli("run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "max", "--window-ms", "20", "--publish", address,
                    "--wait-subscribers", "2", "--record", tmp_path / "out.h5")
        assert r.returncode == 0, r.stderr
        outs = [sub.communicate(timeout=30)[0] for sub in subs]
    finally:
        for sub in subs:
            sub.kill()
    with h5py.File(tmp_path / "out.h5", "r") as f:
        recorded = f["seq"][:]
    assert recorded.tolist() == list(range(50))  # 1 s in 20 ms windows
    for out in outs:
        assert [int(line.split()[0]) for line in out.splitlines()] == list(range(50))  # none lost to either


def test_the_example_subscriber_refuses_a_bad_address_in_one_line():
    r = run_cli("examples/subscribe.py", "nonsense")
    assert r.returncode == 1 and r.stderr.startswith("error: cannot subscribe to nonsense") and r.stderr.count("\n") == 1


def test_stats_before_the_first_frame_are_strict_json():
    """A slow network's first stats message comes before its first frame: no latency yet is
    null, not NaN, which JSON does not have (JavaScript's JSON.parse and serde refuse it)."""
    def no_constants(name):
        raise AssertionError(f"{name} in a stats header")

    stats = RunStats(clock_rate=1.0)
    header = json.loads(encode_stats(stats.snapshot())[1], parse_constant=no_constants)
    assert header["latency_p50_ms"] is None and header["latency_p99_ms"] is None
    assert "latency -" in RunStats.line(header) and "latency -" in stats.summary()
    stats.frame_out(0.012)
    header = json.loads(encode_stats(stats.snapshot())[1], parse_constant=no_constants)
    assert header["latency_p50_ms"] == pytest.approx(12.0)


def test_port_in_use_gives_one_clear_line(edge_h5):
    import zmq
    port = free_port()
    s = zmq.Context.instance().socket(zmq.PUB)
    s.bind(f"tcp://127.0.0.1:{port}")
    try:
        r = run_cli("run_replay.py", edge_h5, "--publish", f"tcp://127.0.0.1:{port}")
    finally:
        s.close(0)
    assert r.returncode == 2 and "pass another --publish address" in r.stderr and r.stderr.count("\n") == 1
