"""The web viewer (view.py --web) on real replays: real ZeroMQ, the real server, a real headless
Chromium driven by selenium, and raw sockets for a browser that stops reading."""
import asyncio
import base64
import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time

import aiohttp
import cv2
import h5py
import numpy as np
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver import ActionChains
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from model.simulation.scenes import render_sequence
from streaming.viewers.exposure import CURVES, render
from tests.conftest import REPO, WAIT_S, default_sigint, free_port, write_moving_edge

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# what runs headless Chromium as root here, with nothing fetched from outside
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1000,800")


@contextlib.contextmanager
def web_viewer(address: str):
    """view.py --web on a free port; yields its URL. Ends as a user ends it: Ctrl-C."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "view.py", address, "--web", f"127.0.0.1:{port}"], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], WAIT_S)
        assert ready and "serving" in proc.stdout.readline(), proc.stderr.read() if proc.poll() is not None else ""
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(WAIT_S)
        finally:
            proc.kill()
            proc.communicate()


def replay(path, address: str, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "run_replay.py", str(path), "--model", "highpass", "--publish", address,
                             "--wait-subscribers", "1", "--stats-every", "0.5", *flags],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no headless browser here: get one with `apt-get install chromium chromium-driver`")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def until(driver, script: str, timeout=WAIT_S):
    """Wait until the page's script returns something true, and return it; a timeout says
    what the page's state line showed."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))
    except TimeoutException:
        pytest.fail(f"waited {timeout} s for {script!r}; the page says: {driver.find_element('id', 'state').text!r}, "
                    f"{driver.find_element('id', 'frame-info').text!r}")


def picture(driver) -> np.ndarray:
    """The frame's canvas as the browser shows it: a real screenshot, in grey levels."""
    png = driver.find_element("id", "frame").screenshot_as_png
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float64)


def last_frame(path) -> np.ndarray:
    with h5py.File(path) as f:
        return f["frames"][-1]


def likeness(shown: np.ndarray, radiance: np.ndarray) -> float:
    """How far the picture shows the frame: the correlation of its grey levels with log radiance."""
    small = cv2.resize(shown, radiance.shape[::-1], interpolation=cv2.INTER_AREA)
    return np.corrcoef(small.ravel(), np.log(np.maximum(radiance, 1e-4)).ravel())[0, 1]


def test_pages_show_a_replay_its_exposure_its_end_and_a_restart(tmp_path, browser):
    render_sequence(tmp_path / "r.h5", seed=5, height=96, width=128, seconds=2.0)  # a textured HDR scene
    address = f"tcp://127.0.0.1:{free_port()}"
    with web_viewer(address) as url:
        browser.get(url)
        first = browser.current_window_handle
        browser.switch_to.new_window("window")
        browser.get(url)
        pages = [first, browser.current_window_handle]
        until(browser, "return document.getElementById('state').textContent.startsWith('waiting for a pipeline')")
        run = replay(tmp_path / "r.h5", address, "--record", str(tmp_path / "frames.h5"))
        shown = []
        for page in pages:  # both pages update while the replay runs
            browser.switch_to.window(page)
            shown.append(until(browser, "return viewer.shown >= 5 && viewer.shown"))
        for page, before in zip(pages, shown):
            browser.switch_to.window(page)
            until(browser, f"return viewer.shown > {before} + 5")
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        ended = until(browser, "const s = document.getElementById('state').textContent; "
                               "return s.includes('ended') && s")
        assert "the pipeline ended" in ended
        until(browser, "return viewer.shown === viewer.received")
        # the last frame stays on the page, and shows the structure of the last frame published
        assert likeness(picture(browser), last_frame(tmp_path / "frames.h5")) > 0.9, "the page does not show the frame"

        canvas = browser.find_element("id", "frame")
        ActionChains(browser).move_to_element_with_offset(canvas, 5, 5).perform()
        assert re.search(r"radiance -?[0-9.e+-]+, [+-][0-9.]+ stops", browser.find_element("id", "pointer").text)
        assert browser.execute_script("return document.getElementById('histogram').getContext('2d')"
                                      ".getImageData(0, 0, 256, 90).data.some((v) => v > 0)"), "no histogram"

        slider = browser.find_element("id", "stops")
        level = picture(browser).mean()  # the last frame stays: only the slider changes it now
        ActionChains(browser).drag_and_drop_by_offset(slider, -60, 0).perform()
        darker = picture(browser).mean()
        ActionChains(browser).drag_and_drop_by_offset(slider, 120, 0).perform()
        brighter = picture(browser).mean()
        assert darker < level - 10 and brighter > level + 10, (darker, level, brighter)

        again = replay(tmp_path / "r.h5", address, "--max-seconds", "0.5")
        assert "restarted" in until(browser, "const s = document.getElementById('state').textContent; "
                                             "return s.includes('restarted') && s")
        again.communicate(timeout=60)


def stalled_socket(url: str, ask_for_frames: bool) -> socket.socket:
    """A WebSocket client that never reads: a paused page (asks for nothing more after its
    upgrade), or a stalled network (keeps asking, so the server sends until the socket is full)."""
    host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    if ask_for_frames:  # masked text frames, as a client must send; more than the socket could take
        mask = os.urandom(4)
        drawn = bytes(b ^ mask[i % 4] for i, b in enumerate(b"drawn"))
        sock.sendall((struct.pack("!BB", 0x81, 0x80 | len(drawn)) + mask + drawn) * 10000)
    return sock


def queued_bytes(sock: socket.socket) -> int:
    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_a_browser_that_stops_reading_slows_neither_the_pipeline_nor_other_pages(tmp_path):
    # as fast as it goes: a pipeline that anything held back would show it in its frames/s
    write_moving_edge(tmp_path / "r.h5", seconds=12.0, height=260, width=346, frame_us=1_000_000)
    address = f"tcp://127.0.0.1:{free_port()}"
    with web_viewer(address) as url:
        run = replay(tmp_path / "r.h5", address, "--rate", "max", "--window-ms", "1")
        try:
            rates, frames, stalled = asyncio.run(_watch_with_and_without_stalled_pages(url))
        finally:
            run.kill()
            run.communicate()
    assert all(len(r) >= 6 for r in rates), rates
    without, with_ = map(np.median, rates)
    assert with_ > 0.5 * without, f"frames/s {without:.0f} without the stalled pages, {with_:.0f} with them"
    assert frames[1] >= 10, "the reading page got no frames while the others stalled"
    assert min(stalled) > 65536, "a stalled socket was never filled"


async def _watch_with_and_without_stalled_pages(url: str, phase_s: float = 2.0):
    """The pipeline's frames/s (its stats, through the server) and the frames a reading page
    got, without and with two stalled pages, in turns of phase_s (so that the machine's other
    load falls on both alike); and what each stalled network had queued unread."""
    rates, frames, stalled, phase = ([], []), [0, 0], [], 0
    async with aiohttp.ClientSession() as session, session.ws_connect(url + "ws") as page:
        async def read():
            async for msg in page:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    frames[phase] += 1
                    await page.send_str("drawn")
                elif '"stats"' in msg.data:
                    rates[phase].extend(s["frames_per_s"] for s in json.loads(msg.data)["stats"] if s["frames"])
        reader = asyncio.create_task(read())
        deadline = time.monotonic() + WAIT_S
        while not frames[0] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.6)  # past the start-up's stats
        rates[0].clear()
        for phase in (0, 1, 0, 1):
            sockets = [stalled_socket(url, ask) for ask in (False, True)] if phase else []
            await asyncio.sleep(phase_s)
            for sock in sockets:
                stalled.append(queued_bytes(sock))
                sock.close()
        reader.cancel()
    return rates, frames, stalled[1::2]


@pytest.mark.parametrize("web, message", [("127.0.0.1:0", "a port 1-65535"), ("localhost:http", "a port 1-65535"),
                                          ("TAKEN", "cannot serve on 127.0.0.1")])
def test_a_bad_or_taken_web_address_is_one_line(web, message):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        web = web.replace("TAKEN", f"127.0.0.1:{taken.getsockname()[1]}")
        r = subprocess.run([sys.executable, "view.py", "--web", web], cwd=REPO, env=ENV, capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_the_page_and_the_window_tone_map_alike(browser):
    """streaming/viewers/web_static/tonemap.js and streaming/viewers/exposure.py are one design in two languages."""
    radiance = np.concatenate([np.logspace(-7, 5, 97), [0.0, -1.0, np.inf, np.nan]]).astype(np.float32)
    with web_viewer(f"tcp://127.0.0.1:{free_port()}") as url:
        browser.get(url)
        until(browser, "return typeof Tonemap === 'object'")
        for curve, false_colour in [*((c, False) for c in CURVES), ("reinhard", True)]:
            page = np.array(browser.execute_script(
                "return arguments[0].map((v) => Tonemap.pixel(v ?? NaN, -3.2, 1.5, arguments[1], arguments[2]))",
                [None if np.isnan(v) else float(v) if np.isfinite(v) else "Infinity" for v in radiance],
                curve, false_colour))
            window = render(radiance[None], -3.2, 1.5, curve, false_colour)[0, :, ::-1]  # BGR -> RGB
            assert np.abs(page - window).max() <= 1, (curve, false_colour)  # 1: float32 against JS's float64
