"""The demo's recording (`make demo`, `run_replay.py --demo`): a simulated HDR scene, a moving
texture under illumination spanning several decades with a light source, generated on first
use into data/demo.h5 by the project's own event simulator."""
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_H5 = REPO / "data" / "demo.h5"
DEMO_OUT = REPO / "out"  # where the demo writes its recording of frames and its video


def ensure_demo_recording() -> Path:
    if not DEMO_H5.exists():
        from model.simulation.scenes import make_demo
        print(f"generating the demo recording {DEMO_H5.relative_to(REPO)} (once) ...", flush=True)
        t0 = time.monotonic()
        DEMO_H5.parent.mkdir(exist_ok=True)
        part = DEMO_H5.with_suffix(".part")  # an interrupted run leaves no half-written demo
        make_demo(part)
        part.rename(DEMO_H5)
        print(f"  done in {time.monotonic() - t0:.1f} s", flush=True)
    return DEMO_H5
