"""run_replay.py as a user runs it: its flags and configurations, --demo, and how it stops
(Ctrl-C, SIGTERM). Real HDF5 files, real sockets, real processes."""
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from streaming.datatypes import EventPacket
from streaming.h5format import EventH5Writer
from tests.conftest import REPO, default_sigint, free_port, real_speed_ticks, run_cli, video_ticks, write_moving_edge


@pytest.mark.parametrize("flags,message", [
    (["--rate", "fast"], "bad --rate"), (["--rate", "0x"], "bad --rate"), (["--config", "nope"], "no config"),
    (["--model", "missing.pth"], "no such checkpoint"), (["--window-ms", "-3"], "must be at least"),
    (["--window-ms", "inf"], "and finite"), (["--window-events", "100", "--window-max-ms", "inf"], "and finite"),
    (["--window-events", "100", "--window-max-ms", "0.0001"], "must be at least 0.001 ms"),
    (["--sensor-size", "100000x100000"], "Each side is 1 to 4096"), (["--video", "TMP/v.gif"], "name it .mp4"),
    (["--wait-subscribers", "-1"], "must be 0 or more"), (["--publish", "tcp://127.0.0.1:99999"], "port is 1-65535"),
    (["--max-seconds", "0"], "--max-seconds must be a positive"), (["--max-seconds", "inf"], "got inf"),
    (["--stats-every", "-1"], "--stats-every must be a positive"), (["--record", "out.mp4"], "this writes HDF5"),
    (["--video", "no/such/folder/v.mp4"], "there is no folder no/such/folder"),
    (["--config", "eventhdr"], "model eventhdr has no weights"),  # random weights are not a model
    (["--config", "weights/livehdr.pth"], "not valid YAML"),
    (["--rate", "1e-20x"], "a factor from 1e-06x to 1e+06x"),  # it overflowed the replay's timer
    (["--bins", "100000"], "bins must be 2 to 64, got 100000"),  # 32 GiB of voxel grids for the filter
])
def test_bad_flags_give_one_clear_line(edge_h5, flags, message):
    r = run_cli("run_replay.py", edge_h5, *(f.replace("TMP", str(edge_h5.parent)) for f in flags))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (edge_h5.parent / "v.gif").exists()


def test_record_onto_the_recording_is_refused_by_any_name(edge_h5):
    """The same path, or a hard link to it: h5py would truncate the recording as it opens."""
    before = edge_h5.read_bytes()
    os.link(edge_h5, edge_h5.parent / "alias.h5")
    for out in (edge_h5, edge_h5.parent / "alias.h5"):
        r = run_cli("run_replay.py", edge_h5, "--record", out, "--rate", "max")
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "being replayed" in r.stderr, r.stderr
    assert edge_h5.read_bytes() == before


def test_demo_answers_help_and_bad_flags_before_generating_its_scene():
    """`make demo ARGS=...` passes ARGS to run_replay.py --demo; a typo there should not cost the
    scene's generation first."""
    r = run_cli("run_replay.py", "--demo", "--help")
    assert r.returncode == 0 and "--demo" in r.stdout and "generating" not in r.stdout, r.stdout
    r = run_cli("run_replay.py", "--demo", "--rates", "2x")
    assert r.returncode == 2 and "unrecognized arguments: --rates" in r.stderr, r.stderr
    r = run_cli("run_replay.py", "--demo", "--window-ms", "-1")
    assert r.returncode == 2 and "generating" not in r.stdout and r.stderr.count("\n") == 1, r.stderr
    r = run_cli("run_replay.py", "--demo", "somefile.h5")
    assert r.returncode == 2 and "not both" in r.stderr, r.stderr


def replay_1x(tmp_path, images: bool = True, *flags):
    """A 4 s replay at 1x in a process of its own, started (its first line read). Without
    images the file is a single chunk of events, with no reference frames between them."""
    ev = write_moving_edge(tmp_path / "r.h5", seconds=4.0, rate=20000)
    if not images:
        with EventH5Writer(tmp_path / "r.h5", 48, 64) as w:
            w.add_events(ev)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "1x", "--publish",
                          f"tcp://127.0.0.1:{free_port()}", "--record", tmp_path / "o.h5", "--stats-every", "0.5", *flags],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=default_sigint)
    assert p.stdout.readline().startswith("replaying")
    return p


@pytest.mark.parametrize("images", [True, False])
def test_ctrl_c_stops_cleanly(tmp_path, images):
    p = replay_1x(tmp_path, images)
    assert p.stdout.readline().startswith("[")  # the first stats line: the replay is under way
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err  # as shells report a process Ctrl-C ended
    assert "done:" in out and "Traceback" not in err
    with h5py.File(tmp_path / "o.h5", "r") as f:  # closed properly: opens without swmr
        n = len(f["seq"])
    assert 10 < n < 120  # stopped at once, about 1.5 s in: 4 s of 25 ms windows would be 160


def test_sigterm_stops_as_ctrl_c_does_and_consumers_hear_the_end(tmp_path):
    """kill, systemd and docker stop send SIGTERM: the files are closed (the video too) and the
    final stats go out, so a subscriber waiting for them ends."""
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sub = subprocess.Popen([sys.executable, "examples/subscribe.py", address], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, text=True)
    try:
        p = replay_1x(tmp_path, True, "--publish", address, "--video", tmp_path / "o.mp4", "--wait-subscribers", "1")
        assert p.stdout.readline().startswith("waiting for 1 subscriber")
        assert p.stdout.readline().startswith("[")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        received = sub.communicate(timeout=30)[0].splitlines()
    finally:
        sub.kill()
    assert p.returncode == 143 and "done:" in out and sub.returncode == 0, err
    with h5py.File(tmp_path / "o.h5", "r") as f:
        n, t_end = len(f["seq"]), f["t_end_us"][:]
    assert video_ticks(tmp_path / "o.mp4") == real_speed_ticks(t_end, fps=40)  # 25 ms windows, closed whole
    assert 10 < n < 120 and len(received) == n  # stopped early; the subscriber got every frame


def write_hour_gap(path):
    """0.1 s of events, an hour of silence, 0.1 s more: in 1 ms windows, 3.6 million empty ones."""
    rng = np.random.default_rng(0)
    t = np.concatenate([np.sort(rng.integers(0, 100_000, 2000)), 3_600_000_000 + np.sort(rng.integers(0, 100_000, 2000))])
    with EventH5Writer(path, 48, 64) as w:
        w.add_events(EventPacket(t.astype(np.int64), rng.integers(0, 64, 4000).astype(np.uint16),
                                 rng.integers(0, 48, 4000).astype(np.uint16), np.ones(4000, np.int8)))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_is_obeyed_within_a_second_whatever_the_window_count(tmp_path, sig):
    """The windows of a long gap came as one list, and the stop was heard only between source
    items: SIGTERM went unheard for minutes, and docker stop kills after 10 s."""
    write_hour_gap(tmp_path / "gap.h5")
    p = subprocess.Popen([sys.executable, "run_replay.py", tmp_path / "gap.h5", "--model", "highpass", "--rate", "max",
                          "--window-ms", "1", "--publish", f"tcp://127.0.0.1:{free_port()}", "--record", tmp_path / "o.h5",
                          "--stats-every", "0.5"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        assert p.stdout.readline().startswith("replaying")
        assert p.stdout.readline().startswith("[")  # under way
        t0 = time.monotonic()
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert time.monotonic() - t0 < 3, out  # about a second, on a busy machine
    assert p.returncode == 128 + sig and "done:" in out and "Traceback" not in err, err
    with h5py.File(tmp_path / "o.h5", "r") as f:  # closed properly: opens without swmr
        assert 0 < len(f["seq"]) < 3_600_000


def test_ctrl_c_during_start_up_ends_without_a_traceback(tmp_path):
    p = replay_1x(tmp_path)
    p.send_signal(signal.SIGINT)  # while the pipeline warms up, or just after: either way, no traceback
    out, err = p.communicate(timeout=30)
    assert p.returncode in (0, 130) and "Traceback" not in err, err


def test_ctrl_c_while_a_front_imports_is_one_line():
    """A Ctrl-C lands during the imports (a second of torch, numba and dv) as a KeyboardInterrupt
    at module level, outside run_main; every front imports streaming.exits first for this."""
    r = run_cli("-c", "import streaming.exits\nimport numpy\nraise KeyboardInterrupt")
    assert r.stderr == "interrupted\n" and r.returncode == -signal.SIGINT
    for front in ("run_replay.py", "run_live.py", "convert.py", "view.py", "train.py", "evaluate.py"):
        first = next(line for line in (REPO / front).read_text().splitlines() if line.startswith(("from ", "import ")))
        assert first.startswith("from streaming.exits import"), front


def test_ctrl_c_inside_compiled_code_is_an_interrupt_too():
    """Numba hands a Ctrl-C that lands inside a compiled function back as a SystemError raised
    from the KeyboardInterrupt (make_dataset's simulator showed it 1 run in 4)."""
    raise_it = "def main():\n    try:\n        raise KeyboardInterrupt\n    except KeyboardInterrupt:\n        raise {}\n"
    run = "from streaming.exits import run_main\n{}run_main(main)"
    r = run_cli("-c", run.format(raise_it.format("SystemError('returned a result with an exception set')")))
    assert r.returncode == 130 and r.stderr == "interrupted\n", r.stderr
    r = run_cli("-c", run.format(raise_it.format("SystemExit(3)")))
    assert r.returncode == 3 and r.stderr == ""  # an exit chosen while handling one is kept
    r = run_cli("-c", run.format("def main():\n    raise SystemError('a bug')\n"))
    assert r.returncode == 1 and "Traceback" in r.stderr and "SystemError: a bug" in r.stderr


@pytest.mark.parametrize("text,message", [
    ("bins: five\n", "bins must be an integer"), ("model: {type: highpass, cutoff: 3}\n", "unknown settings cutoff"),
    ("model: {type: e2vid}\n", "use one of highpass, pienet, pienet-lite, livehdr, eventhdr, checkpoint"),
    ("window: {policy: ms, size: 3}\n", "bad window settings"),
    ("colour: red\n", "unknown settings colour"), ("model: [\n", "not valid YAML"),
    ("device: gpu\n", "use auto, cpu, cuda or cuda:N"),
    ("window: {policy: ms, max_ms: 50}\n", "is for event-count windows"),
    ("model: highpass\n", "model must be a mapping"), ("publish: 5555\n", "publish must be a string"),
    ("window: {policy: events, events: 1000.7}\n", "window events must be an integer"),
    ("window: {policy: ms, ms: true}\n", "window ms must be a number"),
    ("model: {type: highpass, cutoff_hz: -1}\n", "cutoff_hz must be >= 0 and contrast > 0"),
    ("model: {type: highpass, contrast: .inf}\n", "finite numbers"),  # it failed at the first frame's JSON
    ("bins: 5.7\n", "bins must be an integer, got 5.7"), ("bins: true\n", "bins must be an integer, got True"),
])
def test_bad_config_gives_one_clear_line(edge_h5, tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    r = run_cli("run_replay.py", edge_h5, "--config", tmp_path / "bad.yaml", "--rate", "max",
                "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_flags_change_only_what_they_name(edge_h5, tmp_path):
    """--window-events keeps the config's max_ms, and --model highpass its filter settings."""
    (tmp_path / "c.yaml").write_text("model: {type: highpass, cutoff_hz: 5.0, contrast: 0.1}\n"
                                     "window: {policy: events, events: 5000, max_ms: 50}\n")
    r = run_cli("run_replay.py", edge_h5, "--config", tmp_path / "c.yaml", "--window-events", "1000", "--model",
                "highpass", "--rate", "max", "--publish", f"tcp://127.0.0.1:{free_port()}", "--record", tmp_path / "o.h5")
    assert r.returncode == 0 and "1000 events or 50 ms windows" in r.stdout, r.stdout + r.stderr
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert json.loads(f.attrs["model"]) == {"type": "highpass", "cutoff_hz": 5.0, "contrast": 0.1}


