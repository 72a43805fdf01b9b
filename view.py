#!/usr/bin/env python3
"""Watch a running pipeline (run_live.py, run_replay.py): its linear HDR frames, tone-mapped as
you choose, in a window or in any number of browsers.

    python view.py                              # a window on the default address, tcp://127.0.0.1:5555
    python view.py tcp://192.168.1.20:5555 --scale 3
    python view.py --web                        # a page at http://127.0.0.1:8080/
    python view.py --web 0.0.0.0:8080           # ... that other machines may open

Both show the newest frame, so a slow screen, browser or network skips frames instead of
falling behind the stream (and never slows the pipeline). The window's keys: + and - change
the exposure by half a stop, a turns auto-exposure off and on, t cycles the tone curve
(Reinhard, log, linear), f toggles false colour; its title gives the frame's time, frames/s and
latency. Esc, q or closing the window quits; the window also closes when the pipeline ends.
The page stays, and shows when the pipeline ends and when one starts again.
"""
from streaming.exits import run_main  # first: it makes a Ctrl-C during the imports quiet

import argparse
import asyncio

from streaming.errors import InputError
from streaming.viewers.desktop import watch
from streaming.outputs.protocol import DEFAULT_ADDRESS
from streaming.viewers.web import DEFAULT_WEB, serve

SCALES = range(1, 17)  # screen pixels per sensor pixel: beyond 16 even a 64x48 sensor overflows a screen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("address", nargs="?", default=DEFAULT_ADDRESS,
                    help=f"the pipeline's address (default {DEFAULT_ADDRESS})")
    ap.add_argument("--scale", type=int, default=2,
                    help=f"the window's screen pixels per sensor pixel, {SCALES[0]}-{SCALES[-1]} (default 2)")
    ap.add_argument("--web", nargs="?", const=DEFAULT_WEB, metavar="[HOST:]PORT",
                    help=f"serve a page for any number of browsers instead of opening a window (default "
                         f"{DEFAULT_WEB}; 0.0.0.0:PORT lets other machines in)")
    args = ap.parse_args(argv)
    if args.web:
        asyncio.run(serve(args.address, args.web))
        return 0
    if args.scale not in SCALES:
        raise InputError(f"--scale {args.scale}: give {SCALES[0]} to {SCALES[-1]} screen pixels per sensor pixel")
    print(watch(args.address, args.scale))
    return 0


if __name__ == "__main__":
    run_main(main)
