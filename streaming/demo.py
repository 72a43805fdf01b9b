"""`make demo`: replay a simulated HDR scene at real speed, write the recording and the video.

The demo scene (a moving texture under illumination spanning several decades, with a light
source) is generated on first use into data/demo.h5 by the project's own event simulator.
While it runs, any program can subscribe to the frames (see README.md).
"""
import sys
import time
from pathlib import Path

from streaming.exits import run_main

REPO = Path(__file__).resolve().parents[1]
DEMO_H5 = REPO / "data" / "demo.h5"
OUT = REPO / "out"


def ensure_demo_recording() -> Path:
    if not DEMO_H5.exists():
        from model.scenes import make_demo
        print(f"generating the demo recording {DEMO_H5.relative_to(REPO)} (once) ...", flush=True)
        t0 = time.monotonic()
        DEMO_H5.parent.mkdir(exist_ok=True)
        part = DEMO_H5.with_suffix(".part")  # an interrupted run leaves no half-written demo
        make_demo(part)
        part.rename(DEMO_H5)
        print(f"  done in {time.monotonic() - t0:.1f} s", flush=True)
    return DEMO_H5


def main() -> int:
    import run_replay
    argv = [str(DEMO_H5), "--rate", "1x", "--record", str(OUT / "demo_frames.h5"), "--video", str(OUT / "demo.mp4"),
            "--stats-every", "1", *sys.argv[1:]]
    if {"-h", "--help"} & set(sys.argv[1:]):
        print("make demo ARGS='...' passes its options to run_replay.py, which replays the demo's own "
              "recording (the FILE below):\n")
    run_replay.parser().parse_args(argv)  # --help, or a mistyped flag, answers before the scene is generated
    ensure_demo_recording()
    OUT.mkdir(exist_ok=True)
    print("python run_replay.py " + " ".join(a.replace(str(REPO) + "/", "") for a in argv), flush=True)
    return run_replay.main(argv)


if __name__ == "__main__":
    run_main(main)
