"""The desktop viewer (view.py): a pipeline's newest linear frame in an OpenCV window, with
exposure, tone curve and false colour on keys (streaming/viewers/exposure.py)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import cv2
import numpy as np

from streaming.errors import InputError
from streaming.outputs.subscriber import Subscription
from streaming.viewers.exposure import CURVES, AutoExposure, render

WINDOW = "HDR view"
FPS_CAP = 120  # screen updates per second at most; frames in between are skipped
STEP_STOPS = 0.5  # what one press of + or - changes the exposure by
KEYS = "+/- exposure, a auto-exposure, t tone curve, f false colour, q or Esc quits"
QUIT = {27, ord("q")}
FONTS = Path("/usr/share/fonts/truetype")


def check_display() -> None:
    """OpenCV's windows (Qt on X11) abort the process, with pages of Qt's messages, where
    DISPLAY names no X server: so ask the server's socket first."""
    display = os.environ.get("DISPLAY")
    if not display:
        raise InputError("cannot open a window: no display (DISPLAY is unset); run it where there is one, "
                         "or use --web and a browser")
    host, _, number = display.rpartition(":")
    number = number.partition(".")[0]
    try:
        if host in ("", "unix"):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(f"/tmp/.X11-unix/X{number}")
        else:
            socket.create_connection((host, 6000 + int(number)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise InputError(f"cannot open a window: no X server answers at DISPLAY={display} ({e}); "
                         "run it where there is a display, or use --web and a browser") from None


class View:
    """What the window shows and how: the settings the keys change."""

    def __init__(self, scale: int):
        self.scale, self.stops, self.curve, self.false_colour = scale, 0.0, CURVES[0], False
        self.auto, self.locked_key = AutoExposure(), None  # locked: auto-exposure off holds the key it had

    def press(self, key: int) -> bool:
        """Whether the key (cv2.waitKey's code, -1 for none) changed what is shown."""
        char = chr(key) if 0 < key < 0x110000 else None
        if char in ("+", "=", "-"):
            self.stops += STEP_STOPS if char in "+=" else -STEP_STOPS
        elif char == "t":
            self.curve = CURVES[(CURVES.index(self.curve) + 1) % len(CURVES)]
        elif char == "f":
            self.false_colour = not self.false_colour
        elif char == "a":
            self.locked_key = None if self.locked_key is not None else self.auto.key
        else:
            return False
        return True

    def picture(self, image: np.ndarray) -> np.ndarray:
        k = self.locked_key if self.locked_key is not None else self.auto.key
        bgr = render(image, k or 0.0, self.stops, self.curve, self.false_colour)
        return cv2.resize(bgr, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_NEAREST)

    def title(self, header: dict, stats: dict) -> str:
        fps = stats.get("frames_per_s")
        return (f"t {header['t_end_us'] / 1e6:.3f} s" + (f" | {fps:.0f} fps" if fps else "")
                + f" | latency {header['latency_ms']:.0f} ms | {self.curve} {self.stops:+.1f} stops"
                + (" auto" if self.locked_key is None else "") + (" | false colour" if self.false_colour else ""))


def watch(address: str, scale: int) -> str:
    """Show the pipeline until it ends, goes, or the window is closed; returns the closing line."""
    check_display()
    if FONTS.is_dir():  # OpenCV's Qt ships no fonts, and says so at every window
        os.environ.setdefault("QT_QPA_FONTDIR", str(FONTS))
    sub = Subscription(address, (b"frame", b"stats"))
    print(f"watching {address}: {KEYS}", flush=True)
    cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
    cv2.imshow(WINDOW, np.zeros((240, 320), np.uint8))
    cv2.setWindowTitle(WINDOW, f"waiting for {address}")
    view, shown, received = View(scale), 0, 0
    stats, ended, last = {}, False, None
    while not ended and not sub.gone:
        newest = None
        while msg := sub.recv(0):  # drain: only the newest frame is worth showing
            topic, header, image = msg
            if topic == "stats":
                stats, ended = header, bool(header.get("final"))
            else:
                newest, received = (header, image), received + 1
                view.auto.follow(image, header["t_end_us"])
        key = cv2.waitKey(max(1, 1000 // FPS_CAP))
        if key in QUIT or cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
            break
        changed = view.press(key)
        if newest is not None or (last is not None and changed):
            last = newest or last
            cv2.imshow(WINDOW, view.picture(last[1]))
            cv2.setWindowTitle(WINDOW, view.title(last[0], stats))
            shown += newest is not None
    cv2.destroyAllWindows()
    sub.close()
    how = "; the pipeline ended" if ended else "; the pipeline went away without its final message" if sub.gone \
        else ""
    return f"shown {shown} of {received} frames{how}"
