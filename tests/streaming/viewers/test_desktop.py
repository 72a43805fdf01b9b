"""The desktop viewer on real replays: a real ZeroMQ stream into a real OpenCV window on a real
X server (Xvfb), driven with real key presses (xdotool) and seen through screen captures."""
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from tests.conftest import NO_DISPLAY_ENV as ENV
from tests.conftest import REPO, WAIT_S, XDisplay, free_port, write_moving_edge

XDOTOOL = shutil.which("xdotool")


def xdotool(display: XDisplay, *args) -> str:
    return subprocess.run([XDOTOOL, *args], env=display.env, capture_output=True, text=True, timeout=WAIT_S).stdout


def window_picture(display: XDisplay, shows=lambda picture: True) -> np.ndarray:
    """The viewer's window as the X server shows it (BGR), once its title says a frame is in
    and its picture `shows` what is expected (a repaint lags a key press or a title)."""
    deadline = time.monotonic() + WAIT_S
    while not (window := xdotool(display, "search", "--name", "latency").split()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert window, "no window titled with a frame's latency"
    geometry = dict(line.split("=") for line in xdotool(display, "getwindowgeometry", "--shell", window[0]).split())
    x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    while True:
        picture = display.screen()[y:y + h, x:x + w].astype(np.float64)
        if shows(picture) or time.monotonic() > deadline:
            return picture
        time.sleep(0.1)


def viewer(address, display: XDisplay, *flags) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "view.py", address, *flags], cwd=REPO, env=display.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def replay(path, address, *flags) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "run_replay.py", str(path), "--model", "highpass", "--publish", address,
                             "--wait-subscribers", "1", *flags],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def frames_flow(run: subprocess.Popen) -> None:
    """Until the replay's first stats line (it needs --stats-every): from then on frames reach the
    viewer, and a wait for its picture waits on the viewer's own start-up alone."""
    stuck = threading.Timer(2 * WAIT_S, run.kill)  # a replay that never starts must not hang the suite
    stuck.start()
    try:
        for line in run.stdout:
            if "Mev/s" in line:
                return
    finally:
        stuck.cancel()
    pytest.fail(f"the replay ended or stalled before its frames flowed: {run.communicate()[1]}")


def test_the_viewer_shows_a_replay_until_it_ends(edge_h5, x_display):
    address = f"tcp://127.0.0.1:{free_port()}"
    run = replay(edge_h5, address, "--rate", "2x")
    shown = subprocess.run([sys.executable, "view.py", address, "--scale", "3"], cwd=REPO, env=x_display.env,
                           capture_output=True, text=True, timeout=60)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert shown.returncode == 0, shown.stderr
    frames = int(re.search(r"(\d+) frames", out).group(1))
    n, received = map(int, re.search(r"shown (\d+) of (\d+) frames; the pipeline ended", shown.stdout).groups())
    assert received == frames == 40 and 1 <= n <= received  # every frame arrived; the newest were shown


@pytest.mark.skipif(not XDOTOOL, reason="no xdotool here: get it with `apt-get install xdotool`")
def test_the_viewers_keys_change_exposure_and_colours_and_close_it(tmp_path, x_display):
    write_moving_edge(tmp_path / "r.h5", seconds=30.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    window = viewer(address, x_display, "--scale", "4")
    run = replay(tmp_path / "r.h5", address, "--stats-every", "0.5")
    try:
        frames_flow(run)

        def structured(p):
            return p.std() > 3
        picture = window_picture(x_display, structured)
        assert picture.shape[:2] == (48 * 4, 64 * 4) and structured(picture), "the window shows no frame"

        def brighter(p):
            return p.mean() > picture.mean() + 20
        xdotool(x_display, "search", "--name", "latency", "key", *["plus"] * 6)  # 3 stops brighter
        assert brighter(window_picture(x_display, brighter)), "+ does not brighten the picture"

        def coloured(p):
            return np.abs(p - p.mean(axis=2, keepdims=True)).mean() > 10
        xdotool(x_display, "search", "--name", "latency", "key", "f")
        assert coloured(window_picture(x_display, coloured)), "false colour shows grey"
        xdotool(x_display, "search", "--name", "latency", "key", "q")
        out, err = window.communicate(timeout=WAIT_S)
    finally:
        window.kill()
        run.kill()
        run.communicate()
    assert window.returncode == 0, err
    shown, received = map(int, re.search(r"shown (\d+) of (\d+) frames$", out.strip()).groups())
    assert 1 <= shown <= received


@pytest.mark.parametrize("flags", [["--scale", "0"], ["--scale", "17"]])
def test_a_scale_out_of_bounds_is_one_line(flags, x_display):
    r = subprocess.run([sys.executable, "view.py", *flags], cwd=REPO, env=x_display.env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "give 1 to 16" in r.stderr, r.stderr


@pytest.mark.parametrize("display", [{"DISPLAY": ":987"},  # no X server there: Qt would abort the process
                                     {}])  # no display at all
def test_the_viewer_without_a_screen_says_so_in_one_line(display):
    r = subprocess.run([sys.executable, "view.py", f"tcp://127.0.0.1:{free_port()}"], cwd=REPO,
                       env={**ENV, **display}, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot open a window" in r.stderr, r.stderr


@pytest.mark.parametrize("consumer", [["view.py"], ["view.py", "--web", "WEB"],
                                      ["-m", "streaming.outputs.recorder", "OUT", "--connect"]],
                         ids=["viewer", "web viewer", "recorder"])
def test_a_publisher_that_is_not_a_pipeline_is_one_line(tmp_path, consumer, x_display):
    address = f"tcp://127.0.0.1:{free_port()}"
    fill = {"OUT": str(tmp_path / "o.h5"), "WEB": f"127.0.0.1:{free_port()}"}
    done = threading.Event()
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as pub:
        pub.bind(address)

        def chatter():  # until the consumer has joined and given up
            while not done.wait(0.05):
                pub.send_multipart([b"stats", b"hello"])
                pub.send_multipart([b"frame", b"hello"])
        sender = threading.Thread(target=chatter)
        sender.start()
        try:
            r = subprocess.run([sys.executable, *(fill.get(a, a) for a in consumer), address], cwd=REPO,
                               env=x_display.env, capture_output=True, text=True, timeout=60)
        finally:
            done.set()
            sender.join()
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a frame pipeline's" in r.stderr, r.stderr


def test_the_viewer_closes_when_a_killed_pipeline_goes_away(tmp_path, x_display):
    """Killed, the pipeline sends no final stats: its connection closing is what ends the viewer."""
    write_moving_edge(tmp_path / "r.h5", seconds=30.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    window = viewer(address, x_display)
    run = replay(tmp_path / "r.h5", address, "--stats-every", "0.5")
    try:
        frames_flow(run)
        if XDOTOOL:  # and the viewer has shown one (its title says so): its start-up can take longer, on a busy machine
            window_picture(x_display)
        run.kill()
        out, err = window.communicate(timeout=30)
    finally:
        window.kill()
        run.kill()
        run.communicate()
    assert window.returncode == 0, err
    shown, received = map(int, re.search(r"shown (\d+) of (\d+) frames; the pipeline went away", out).groups())
    assert 1 <= shown <= received
