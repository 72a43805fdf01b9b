"""The event simulator and the scene generator."""
import dataclasses
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from scipy import ndimage

from model.simulation.scenes import make_scene, render_sequence
from model.simulation.simulator import EventSimulator, SimConfig
from streaming.datatypes import EventPacket
from streaming.h5format import EventH5Reader
from tests.conftest import REPO, default_sigint, run_cli

C = 0.25
EXACT = SimConfig(c_pos=C, c_neg=C, c_sigma=0.0, refractory_us=0, shot_noise_hz=0.0, hot_pixel_fraction=0.0)


def _image(log_intensity, shape=(3, 4)):
    """A frame whose log(I + eps) is log_intensity everywhere."""
    return np.full(shape, np.exp(log_intensity) - EXACT.eps, np.float32)


def _one_pixel_step(config, log_change, t0=1000, t1=2000, pixel=(1, 2)):
    """Events of `pixel` changing its log intensity by log_change over (t0, t1]; the rest stay."""
    sim = EventSimulator(3, 4, config, seed=0)
    base = np.log(0.01)
    assert len(sim.step(_image(base), t0)) == 0  # the first frame only sets the references
    frame = _image(base)
    frame[pixel] = np.exp(base + log_change) - config.eps
    return sim.step(frame, t1)


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("sign", [1, -1])
def test_k_thresholds_give_k_events_of_that_polarity(k, sign):
    ev = _one_pixel_step(EXACT, sign * (k + 0.5) * C)  # half a threshold of margin for rounding
    assert len(ev) == k
    assert (ev.p == sign).all()
    assert (ev.x == 2).all() and (ev.y == 1).all()


def test_on_and_off_thresholds_are_separate():
    """Real sensors have unequal ON and OFF thresholds: a log change of 1.05 is 5 of 0.2 up, 2 of 0.4 down."""
    uneven = dataclasses.replace(EXACT, c_pos=0.2, c_neg=0.4)
    assert len(_one_pixel_step(uneven, 1.05)) == 5 and len(_one_pixel_step(uneven, -1.05)) == 2


def test_timestamps_are_interpolated_within_the_step():
    ev = _one_pixel_step(EXACT, 3.5 * C, t0=1000, t1=2000)
    # the log intensity moves linearly: threshold j is crossed at j / 3.5 of the step
    expected = 1000 + np.array([1, 2, 3]) / 3.5 * 1000
    np.testing.assert_allclose(ev.t, expected, atol=1)


def test_refractory_period_suppresses_events():
    # crossings at 200, 400, ..., 1000 us into the step; 500 us of refractory keeps 200 and 800
    config = SimConfig(**{**EXACT.__dict__, "refractory_us": 500})
    ev = _one_pixel_step(config, 5.5 * C, t0=0, t1=1100)
    np.testing.assert_allclose(ev.t, [200, 800], atol=1)


def test_a_dim_pixel_sees_a_step_later_and_loses_none_of_it():
    # the same step of 4.5 thresholds (x3.1) in a lit pixel and in one that stays 30x below the
    # knee: bandwidths 100 Hz and 3 Hz (time constants 1.6 ms and 52 ms), rendered every
    # millisecond as model.simulation.scenes does. Threshold j is crossed at -tau * ln(1 - j / 4.5).
    config = SimConfig(**{**EXACT.__dict__, "cutoff_hz": 100.0, "bandwidth_knee": 0.1})
    sim = EventSimulator(1, 2, config, seed=0)
    before = np.array([[0.5, 0.001]], np.float32)
    sim.step(before, 0)
    after = before * np.float32(np.exp(4.5 * C))
    packets = [sim.step(after, t) for t in range(1000, 1_000_001, 1000)]
    times = [np.concatenate([p.t[p.x == x] for p in packets]) for x in (0, 1)]
    assert all(len(t) == 4 for t in times)  # no change is lost, only late
    assert times[0][-1] <= 5_000  # 3.5 ms
    np.testing.assert_allclose(times[1], [13_000, 30_400, 56_800, 113_600], rtol=0.05)
    ideal = EventSimulator(1, 2, EXACT, seed=0)
    ideal.step(before, 0)
    assert len(ideal.step(after, 1000)) == 8  # an ideal sensor: all at once, in both pixels


def test_shot_noise_is_more_frequent_in_the_dark():
    config = SimConfig(shot_noise_hz=0.5, hot_pixel_fraction=0.0, bandwidth_knee=0.1, dark_noise_gain=9.0)
    image = np.full((40, 40), 0.5, np.float32)
    image[:, :20] = 1e-4  # left half dark: 1 + 9 * (1 - 0.001) times the rate
    sim = EventSimulator(40, 40, config, seed=1)
    sim.step(image, 0)
    ev = EventPacket.concat([sim.step(image, t) for t in range(10_000, 2_000_001, 10_000)])
    dark, lit = (ev.x < 20).sum(), (ev.x >= 20).sum()
    assert 700 < lit < 900  # 800 pixels x 0.5 Hz x 2 s
    assert 8.5 < dark / lit < 11.5


def test_events_time_ordered_across_steps_with_noise():
    config = SimConfig(shot_noise_hz=50.0, hot_pixel_fraction=0.05)
    sim = EventSimulator(16, 16, config, seed=3)
    rng = np.random.default_rng(0)
    packets = [sim.step(rng.uniform(1e-3, 1, (16, 16)).astype(np.float32), t) for t in range(0, 20_000, 1000)]
    t = np.concatenate([p.t for p in packets])
    assert len(t) > 1000
    assert (np.diff(t) >= 0).all()
    for i, p in enumerate(packets[1:]):  # each step's events lie in its own interval
        assert ((p.t > i * 1000) & (p.t <= (i + 1) * 1000)).all()
    assert {-1, 1} == set(np.concatenate([p.p for p in packets]).tolist())


def test_simulator_is_deterministic_given_the_seed():
    config = SimConfig(shot_noise_hz=20.0, hot_pixel_fraction=0.02, c_sigma=0.05)
    rng = np.random.default_rng(1)
    frames = [rng.uniform(1e-3, 1, (8, 8)).astype(np.float32) for _ in range(5)]

    def run(seed):
        sim = EventSimulator(8, 8, config, seed)
        packets = [sim.step(f, 1000 * i) for i, f in enumerate(frames)]
        return np.concatenate([np.stack([p.t, p.x, p.y, p.p]) for p in packets], axis=1)

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


@pytest.mark.parametrize("seed", range(4))
def test_every_frame_spans_four_decades(seed):
    scene = make_scene(seed, 90, 120)
    for t in (0.0, 0.7, 1.9, 3.3):
        frame = scene.render(t)
        assert frame.min() > 0
        assert frame.max() / frame.min() >= 1e4


def test_scene_moves():
    scene = make_scene(0, 60, 80)
    assert np.abs(np.log(scene.render(0.5)) - np.log(scene.render(0.6))).mean() > 0.01
    assert scene.max_displacement(0.5, 0.6) > 1.0


def test_still_scene_lights_ordinarily_and_only_objects_move(tmp_path):
    scene = make_scene(3, 60, 80, style="still")
    frames = np.stack([scene.render(t) for t in np.linspace(0, 2, 26)])
    assert frames.max() / frames.min() < 1e3  # no sun, no deep shadow: an ordinary exposure
    assert scene.max_displacement(0.5, 0.6) > 1.0  # the objects move...
    path = tmp_path / "still.h5"
    render_sequence(path, seed=3, height=60, width=80, seconds=0.4, sim_config=EXACT, style="still")
    r = EventH5Reader(path)
    ev = r.read(0, r.num_events)
    refs = [ref.image.astype(np.float64) for ref in r.references()]
    r.close()
    # ...and the camera does not: without noise, pixels whose radiance never changes stay silent
    changing = np.ptp(np.stack(refs), axis=0) > 0
    assert len(ev) > 100 and changing[ev.y, ev.x].mean() > 0.98
    assert (~changing).mean() > 0.3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_indoor_scenes_have_flat_surfaces_at_every_level(seed):
    """Flat surfaces give no events whatever their level: a network trained on them cannot learn
    that a silent region is a dark one."""
    scene = make_scene(seed, 60, 80, style="indoor")
    refl = scene.background.astype(np.float64)
    local_range = ndimage.maximum_filter(refl, 5) - ndimage.minimum_filter(refl, 5)
    flat = local_range < 0.1
    assert flat.mean() > 0.2
    assert np.percentile(refl[flat], 90) - np.percentile(refl[flat], 10) > 0.2  # not one shade: dark to bright
    assert scene.illum.max() / scene.illum.min() < 1e3  # ordinary light


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "seq.h5"
    render_sequence(path, seed=5, height=48, width=64, seconds=0.4, gt_fps=25)
    return path


def test_recording_reads_back(recording):
    r = EventH5Reader(recording)
    try:
        assert (r.height, r.width) == (48, 64)
        ev = r.read(0, r.num_events)
        assert r.num_events > 100
        assert (np.diff(ev.t) >= 0).all()
        assert ev.t[0] > 0 and ev.t[-1] <= 400_000
        refs = r.references()
        assert len(refs) == 11  # 0, 40, ..., 400 ms
        assert [ref.t_us for ref in refs] == list(range(0, 400_001, 40_000))
        for ref in refs[1:]:  # event_idx: the last event before the image
            assert ev.t[ref.event_idx] < ref.t_us
            assert ref.event_idx + 1 == r.num_events or ev.t[ref.event_idx + 1] >= ref.t_us
    finally:
        r.close()


def test_recording_ground_truth_is_linear_down_to_the_darkest_decade(recording):
    with h5py.File(recording, "r") as f:
        assert f.attrs["gt_encoding"] == "linear"
        scale = float(f.attrs["gt_scale"])
        images = [f["images"][name][()] for name in f["images"]]
        times = [int(f["images"][name].attrs["timestamp"] * 1e6 + 0.5) for name in f["images"]]
    assert all(img.dtype == np.float32 for img in images)
    assert max(float(img.max()) for img in images) == 1.0  # the sequence's brightest pixel
    truth = make_scene(np.random.SeedSequence(5).spawn(2)[0], 48, 64, seconds=0.4).render(times[3] * 1e-6) * scale
    dark = truth < 1e-4  # uint16 kept 0 to 6 levels of these: their texture was lost
    assert dark.mean() > 0.05
    np.testing.assert_allclose(images[3][dark], truth[dark], rtol=1e-6)


def test_an_object_hides_the_light_behind_it():
    scene = make_scene(0, 60, 80)
    scene = dataclasses.replace(scene, emissive=np.full_like(scene.emissive, 10.0),
                                sprite_refl=np.zeros_like(scene.sprite_refl),  # black and opaque
                                sprite_alpha=np.ones_like(scene.sprite_alpha))
    frame = scene.render(0.5)
    covered = frame < 1.0
    assert 0.01 < covered.mean() < 0.99 and frame[covered].max() == 0.0 and frame[~covered].min() >= 10.0


def test_recording_is_deterministic(recording, tmp_path):
    again = tmp_path / "again.h5"
    render_sequence(again, seed=5, height=48, width=64, seconds=0.4, gt_fps=25)
    with h5py.File(recording, "r") as a, h5py.File(again, "r") as b:
        for name in ("events/xs", "events/ys", "events/ts", "events/ps", "images/image000000007"):
            np.testing.assert_array_equal(a[name][()], b[name][()])


def test_make_dataset_writes_the_chosen_style(tmp_path):
    r = run_cli("-m", "model.simulation.make_dataset", tmp_path, "--split", "test", "--count", "1",
                "--seconds", "0.2", "--size", "32x40", "--style", "still")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "seq_0000.h5", "r") as f:
        assert f.attrs["style"] == "still" and f.attrs["seed"] == 1_000_000


def test_make_dataset_starts_at_the_first_index_asked(tmp_path):
    r = run_cli("-m", "model.simulation.make_dataset", tmp_path, "--split", "train", "--count", "1",
                "--first", "900000", "--seconds", "0.2", "--size", "32x40")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["seq_900000.h5"]
    with h5py.File(tmp_path / "seq_900000.h5", "r") as f:
        assert f.attrs["seed"] == 900_000
    r = run_cli("-m", "model.simulation.make_dataset", tmp_path / "d", "--split", "train", "--count", "2",
                "--first", "999999")
    assert r.returncode != 0 and r.stderr.strip() == "error: --first must be in 0..999998 for --count 2, got 999999"


@pytest.mark.parametrize("flags, message", [
    (["--seconds", "nan"], "--seconds must be above 0 and at most 3600, got nan"),
    (["--seconds", "inf"], "--seconds must be above 0 and at most 3600, got inf"),
    (["--seconds", "1e12"], "--seconds must be above 0 and at most 3600, got 1000000000000.0"),
    (["--gt-fps", "nan"], "--gt-fps must be above 1 and at most 1e+06, got nan"),
    (["--gt-fps", "inf"], "--gt-fps must be above 1 and at most 1e+06, got inf"),
    (["--gt-fps", "2e7"], "--gt-fps must be above 1 and at most 1e+06, got 20000000.0"),  # frames a microsecond apart
])
def test_make_dataset_bad_durations_are_one_line(tmp_path, flags, message):
    r = run_cli("-m", "model.simulation.make_dataset", tmp_path / "d", "--split", "test", "--count", "1", *flags)
    assert r.returncode == 2 and r.stderr == f"error: {message}\n", r.stderr
    assert not (tmp_path / "d").exists()


def test_make_dataset_under_a_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("")
    r = run_cli("-m", "model.simulation.make_dataset", tmp_path / "f" / "d", "--split", "test", "--count", "1")
    assert r.returncode == 2 and r.stderr == f"error: OUT_DIR {tmp_path / 'f' / 'd'}: {tmp_path / 'f'} is a file, not a folder\n"


def test_make_dataset_bad_outputs_are_one_line(tmp_path):
    make = ["-m", "model.simulation.make_dataset", tmp_path, "--split", "train", "--count", "1", "--seconds", "0.08"]
    r = run_cli(*make, "--size", "8x8", "--style", "still")  # seed 0 at 8x8: nothing moves into view
    last = r.stderr.splitlines()[-1]  # after the progress bar
    assert r.returncode == 2 and last.startswith("error: ") and "the scene gave no events at 8x8" in last, r.stderr
    assert "Traceback" not in r.stderr
    (tmp_path / "seq_0000.h5").mkdir()
    r = run_cli(*make, "--size", "16x16")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.endswith(f"\nerror: {tmp_path / 'seq_0000.h5'}: cannot be written (Is a directory)\n"), r.stderr
    r = run_cli(*make, "--size", "8x4100")
    assert r.returncode == 2 and "--size 8x4100: a sensor of 8x4100 (height x width)? Each side is 1 to 4096" in r.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["seq_0000.h5"]  # and no partial file left behind


def test_ctrl_c_leaves_only_complete_sequences(tmp_path):
    """Each sequence is written under a temporary name and renamed when complete: an interrupted
    run leaves no file that looks like a recording and is not one."""
    # more sequences than it can render before the signal, however loaded the machine
    p = subprocess.Popen([sys.executable, "-m", "model.simulation.make_dataset", tmp_path, "--split", "test", "--count", "50",
                          "--seconds", "2", "--size", "32x40"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 180
    while not (tmp_path / "seq_0000.h5").exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if p.poll() is not None or not (tmp_path / "seq_0000.h5").exists():
        p.kill()
        pytest.fail(f"no first sequence while it ran: {p.communicate()[1]}")
    p.send_signal(signal.SIGINT)  # while a later sequence renders
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130 and err.endswith("interrupted\n") and "Traceback" not in err, err
    names = sorted(f.name for f in tmp_path.iterdir())
    assert names == [f"seq_{i:04d}.h5" for i in range(len(names))] and len(names) < 50, names
    for i, name in enumerate(names):
        with h5py.File(tmp_path / name, "r") as f:
            assert f.attrs["num_imgs"] == len(f["images"]) == 51 and f.attrs["seed"] == 1_000_000 + i
