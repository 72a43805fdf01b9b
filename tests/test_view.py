"""The viewer on a real replay: a real ZeroMQ stream into a real (off-screen) pygame window."""
import os
import re
import subprocess
import sys
import threading

import pytest
import zmq

from tests.conftest import REPO, free_port, write_moving_edge

HEADLESS = {**os.environ, "PYTHONPATH": str(REPO), "SDL_VIDEODRIVER": "dummy"}  # SDL's window without a screen


def test_the_viewer_shows_a_replay_until_it_ends(edge_h5):
    address = f"tcp://127.0.0.1:{free_port()}"
    replay = subprocess.Popen([sys.executable, "run_replay.py", edge_h5, "--model", "highpass", "--rate", "2x",
                               "--publish", address, "--wait-subscribers", "1"],
                              cwd=REPO, env=HEADLESS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    viewer = subprocess.run([sys.executable, "view.py", address, "--scale", "3"], cwd=REPO, env=HEADLESS,
                            capture_output=True, text=True, timeout=60)
    out, err = replay.communicate(timeout=60)
    assert replay.returncode == 0, err
    assert viewer.returncode == 0, viewer.stderr
    frames = int(re.search(r"(\d+) frames", out).group(1))
    shown, received = map(int, re.search(r"shown (\d+) of (\d+) pictures; the pipeline ended", viewer.stdout).groups())
    assert received == frames == 40 and 1 <= shown <= received  # every preview arrived; the newest were shown


@pytest.mark.parametrize("display", [{"SDL_VIDEODRIVER": "x11", "DISPLAY": ":99"},  # no X server there
                                     {"DISPLAY": ":99"},  # SDL would go on to its "offscreen" driver: unseen
                                     {}])  # no display at all
def test_the_viewer_without_a_screen_says_so_in_one_line(display):
    env = {**{k: v for k, v in HEADLESS.items() if k not in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY")},
           **display}
    r = subprocess.run([sys.executable, "view.py", f"tcp://127.0.0.1:{free_port()}"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot open a window" in r.stderr, r.stderr


@pytest.mark.parametrize("consumer", [["view.py"], ["-m", "streaming.recorder", "OUT", "--connect"]],
                         ids=["viewer", "recorder"])
def test_a_publisher_that_is_not_a_pipeline_is_one_line(tmp_path, consumer):
    address = f"tcp://127.0.0.1:{free_port()}"
    done = threading.Event()
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as pub:
        pub.bind(address)

        def chatter():  # until the consumer has joined and given up
            while not done.wait(0.05):
                pub.send_multipart([b"preview", b"hello"])
                pub.send_multipart([b"frame", b"hello"])
        sender = threading.Thread(target=chatter)
        sender.start()
        try:
            r = subprocess.run([sys.executable, *(str(tmp_path / "o.h5") if a == "OUT" else a for a in consumer),
                                address], cwd=REPO, env=HEADLESS, capture_output=True, text=True, timeout=60)
        finally:
            done.set()
            sender.join()
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a frame pipeline's" in r.stderr, r.stderr


def test_the_viewer_closes_when_a_killed_pipeline_goes_away(tmp_path):
    """Killed, the pipeline sends no final stats: its connection closing is what ends the viewer."""
    write_moving_edge(tmp_path / "r.h5", seconds=30.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    viewer = subprocess.Popen([sys.executable, "view.py", address], cwd=REPO, env=HEADLESS,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    replay = subprocess.Popen([sys.executable, "run_replay.py", tmp_path / "r.h5", "--model", "highpass",
                               "--publish", address, "--wait-subscribers", "1", "--stats-every", "0.5"],
                              cwd=REPO, env=HEADLESS, stdout=subprocess.PIPE, text=True)
    try:
        for line in replay.stdout:
            if "Mev/s" in line:  # a stats line: frames flow to the viewer
                break
        replay.kill()
        out, err = viewer.communicate(timeout=30)
    finally:
        viewer.kill()
        replay.kill()
    assert viewer.returncode == 0, err
    shown, received = map(int, re.search(r"shown (\d+) of (\d+) pictures; the pipeline went away", out).groups())
    assert 1 <= shown <= received
