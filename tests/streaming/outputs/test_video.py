"""--video: events | reconstruction | reference side by side, at the recording's speed."""
import av
import h5py
import numpy as np

from streaming.datatypes import EventPacket
from streaming.outputs.video import event_image
from tests.conftest import free_port, real_speed_ticks, run_cli, video_ticks, write_moving_edge


def test_recording_and_video(tmp_path):
    write_moving_edge(tmp_path / "r.h5", seconds=0.6)
    r = run_cli("run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "max", "--window", "frames",
                "--publish", f"tcp://127.0.0.1:{free_port()}", "--record", tmp_path / "o.h5", "--video", tmp_path / "o.mp4")
    assert r.returncode == 0, r.stderr
    assert "done:" in r.stdout
    with h5py.File(tmp_path / "o.h5", "r") as f:
        frames, t0, t1 = f["frames"][:], f["t_start_us"][:], f["t_end_us"][:]
        assert f.attrs["window"] == "frame-aligned" and "highpass" in f.attrs["model"]
    assert frames.shape == (15, 48, 64) and frames.dtype == np.float32  # one per image (40 ms apart)
    assert np.isfinite(frames).all() and frames.std() > 0
    assert (t1 == np.arange(1, 16) * 40000).all() and (t0[1:] == t1[:-1]).all()
    with av.open(str(tmp_path / "o.mp4")) as v:
        decoded = [f.to_ndarray(format="rgb24") for f in v.decode(video=0)]
    assert len(decoded) == 15 and decoded[0].shape == (48, 3 * 64, 3)


def test_the_video_plays_at_the_recordings_speed_whatever_the_windows(tmp_path):
    """Event-count windows come faster than the video's 25 frames a second: each tick shows the
    newest frame by then, so the video lasts as long as the recording (it used to last 2.6x)."""
    write_moving_edge(tmp_path / "r.h5", seconds=2.0)
    r = run_cli("run_replay.py", tmp_path / "r.h5", "--model", "highpass", "--rate", "max", "--window-events", "100",
                "--publish", f"tcp://127.0.0.1:{free_port()}", "--record", tmp_path / "o.h5", "--video", tmp_path / "o.mp4")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "o.h5", "r") as f:
        t_end = f["t_end_us"][:]
    ticks = video_ticks(tmp_path / "o.mp4")
    assert ticks == real_speed_ticks(t_end, fps=25) and 45 <= ticks <= 51 < len(t_end)
    with av.open(str(tmp_path / "o.mp4")) as v:
        assert v.streams.video[0].average_rate == 25


def test_video_events_panel_colours_each_pixel_by_its_net_polarity():
    ev = EventPacket(np.arange(4, dtype=np.int64), np.array([1, 1, 1, 3], np.uint16),
                     np.array([2, 2, 2, 0], np.uint16), np.array([1, 1, -1, -1], np.int8))
    img = event_image(ev, 4, 5)
    assert tuple(img[2, 1]) == (220, 40, 40) and tuple(img[0, 3]) == (40, 70, 220)  # red ON, blue OFF
    img[2, 1] = img[0, 3] = 255
    assert (img == 255).all()  # white where nothing happened
