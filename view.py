#!/usr/bin/env python3
"""Watch a running pipeline (run_live.py, run_replay.py) in a window: its tone-mapped preview.

    python view.py                              # the default address, tcp://127.0.0.1:5555
    python view.py tcp://192.168.1.20:5555 --scale 2

Subscribes to the `preview` and `stats` topics (README: Consuming the frames) and shows the
newest preview, so a slow screen skips pictures instead of falling behind the stream. The
title gives the frame's time, frames/s and latency. Esc, q or closing the window quits; the
window also closes when the pipeline ends.
"""
from streaming.exits import run_main  # first: it makes a Ctrl-C during the imports quiet

import argparse
import os
import sys

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402  (after the variable that keeps its banner quiet)

from streaming.datatypes import InputError  # noqa: E402
from streaming.protocol import DEFAULT_ADDRESS  # noqa: E402
from streaming.subscriber import Subscription  # noqa: E402

MAX_SCALE = 16
FPS_CAP = 120  # screen updates per second at most; pictures in between are skipped
GREY = [(v, v, v) for v in range(256)]  # the palette that shows 8-bit indexed pictures as grey


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("address", nargs="?", default=DEFAULT_ADDRESS,
                    help=f"the pipeline's address (default {DEFAULT_ADDRESS})")
    ap.add_argument("--scale", type=int, default=2, help="screen pixels per sensor pixel (default 2)")
    args = ap.parse_args(argv)
    if not 1 <= args.scale <= MAX_SCALE:  # a window 100,000 times the sensor's size is no window
        raise InputError(f"--scale {args.scale}: must be 1 to {MAX_SCALE}")
    sub = Subscription(args.address, (b"preview", b"stats"))
    if sys.platform.startswith("linux") and not os.environ.get("SDL_VIDEODRIVER"):
        # SDL tries every driver in turn and, where no display answers, ends on "offscreen": a
        # window nobody sees. So name the one the environment points to.
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError("cannot open a window: no display (DISPLAY and WAYLAND_DISPLAY are unset); "
                             "run it where there is a display")
        os.environ["SDL_VIDEODRIVER"] = "x11" if os.environ.get("DISPLAY") else "wayland"
    try:
        pygame.display.init()
        screen = pygame.display.set_mode((320, 240))
    except pygame.error as e:
        raise InputError(f"cannot open a window ({e}); run it where there is a display") from None
    pygame.display.set_caption(f"waiting for {args.address}")
    shown = received = 0
    clock, stats, ended = pygame.time.Clock(), {}, False
    while not ended and not sub.gone and not _quit_asked():
        newest = None
        while msg := sub.recv(0):  # drain: only the newest picture is worth showing
            topic, header, image = msg
            if topic == "stats":
                stats, ended = header, bool(header.get("final"))
            else:
                newest, received = (header, image), received + 1
        if newest is not None:
            screen = _show(screen, *newest, args.scale, stats)
            shown += 1
        clock.tick(FPS_CAP)
    pygame.display.quit()
    sub.close()
    how = "; the pipeline ended" if ended else "; the pipeline went away without its final message" if sub.gone else ""
    print(f"shown {shown} of {received} pictures{how}")
    return 0


def _quit_asked() -> bool:
    return any(e.type == pygame.QUIT or (e.type == pygame.KEYDOWN and e.key in (pygame.K_ESCAPE, pygame.K_q))
               for e in pygame.event.get())


def _show(screen, header: dict, image, scale: int, stats: dict):
    h, w = image.shape
    if screen.get_size() != (w * scale, h * scale):  # the first picture, or another sensor
        screen = pygame.display.set_mode((w * scale, h * scale))
    grey = pygame.image.frombuffer(image.tobytes(), (w, h), "P")
    grey.set_palette(GREY)
    screen.blit(pygame.transform.scale(grey, screen.get_size()), (0, 0))
    pygame.display.flip()
    fps = stats.get("frames_per_s")
    pygame.display.set_caption(f"t {header['t_end_us'] / 1e6:.3f} s" + (f" | {fps:.0f} fps" if fps else "")
                               + f" | latency {header['latency_ms']:.0f} ms")
    return screen


if __name__ == "__main__":
    run_main(main)
