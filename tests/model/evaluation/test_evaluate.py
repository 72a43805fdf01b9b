import shutil

import h5py
import numpy as np
import pytest
import torch

from model.evaluation.evaluate import STANDARD_ROWS
from model.evaluation.metrics import MAX_PSNR_DB, mu_law, percentile_normalise, psnr, sequence_metrics, ssim
from model.factory import set_threads
from streaming.errors import InputError
from streaming.h5format import EventH5Writer
from streaming.outputs.tonemap import CausalToneMapper, official_postprocess
from tests.conftest import REPO, run_cli, write_moving_edge


def test_metrics_on_known_images():
    a = np.full((32, 32), 0.5)
    assert abs(psnr(a, a + 0.1) - 20.0) < 1e-9  # MSE 0.01
    assert abs(psnr(a, a + 0.01) - 40.0) < 1e-9
    rng = np.random.default_rng(0)
    img = rng.random((64, 64))
    assert ssim(img, img) == 1.0
    assert ssim(img, 1 - img) < 0  # anti-correlated structure
    assert mu_law(np.array(1.0)) == 1.0 and mu_law(np.array(0.0)) == 0.0
    n = percentile_normalise(np.linspace(0, 1, 10001))
    assert n.min() == 0 and n.max() == 1 and abs(n[5000] - 0.5) < 1e-3


def test_sequence_metrics_ignore_the_output_scale():
    rng = np.random.default_rng(1)
    truth = rng.random((3, 24, 24)) ** 3 + 1e-3
    m = sequence_metrics(truth * 37.0, truth)  # a correct reconstruction at another scale
    assert m["ssim"] > 0.999 and m["psnr"] > 60 and m["mu_psnr"] > 60
    worse = sequence_metrics(truth[:, ::-1] * 37.0, truth)  # upside down
    assert worse["psnr"] < 20 and worse["ssim"] < 0.5


def test_mu_law_psnr_on_known_values():
    """The output is scaled by the median ratio (0.5 here; a quarter of the pixels' 0.05 must not
    pull it) and both are divided by the ground truth's peak (4): three quarters of the pixels then
    match, the last is mu-law(10) against mu-law(1)."""
    block = np.ones((1, 4, 4))  # 8x8 frames: SSIM's window needs 7x7
    truth = np.kron([[[1.0, 2.0], [3.0, 4.0]]], block)
    m = sequence_metrics(np.kron([[[2.0, 4.0], [6.0, 80.0]]], block), truth)
    error = np.log1p(5000 * 10) / np.log1p(5000) - 1
    assert m["mu_psnr"] == pytest.approx(10 * np.log10(4 / error ** 2), abs=1e-9)


def _table_rows(path):
    return {line.split("|")[1].strip(): [float(v) for v in line.strip("|").split("|")[1:]]
            for line in path.read_text().splitlines() if line.startswith("| ") and "PSNR" not in line}


DEFAULT_ROWS = {"blank", *STANDARD_ROWS, "livehdr (default)"}  # every table's: floor, filter, PIE-Net, ours


def test_evaluate_cli_reports_every_standard_row_and_metric(tmp_path):
    write_moving_edge(tmp_path / "a.h5", seconds=0.3)
    r = run_cli("evaluate.py", tmp_path, "--out", tmp_path / "table.md")
    assert r.returncode == 0, r.stderr
    rows = _table_rows(tmp_path / "table.md")
    assert set(rows) == DEFAULT_ROWS == {"blank", "highpass", "pienet", "pienet-lite", "livehdr (default)"}
    assert "| log PSNR (dB) | log SSIM |" in (tmp_path / "table.md").read_text()
    for name, (psnr_db, ssim_v, mu_db, log_db, log_ssim) in rows.items():
        assert 0 < psnr_db < 101 and -1 <= ssim_v <= 1 and 0 < mu_db < 101 and 0 < log_db < 101, name
        assert -1 <= log_ssim <= 1, name
    for model in ("highpass", "pienet", "livehdr (default)"):  # each shows the moving edge; a blank frame nothing
        assert rows["blank"][1] < rows[model][1] and rows["blank"][4] < rows[model][4], model


def test_log_domain_metrics_floor_what_is_not_positive_and_ignore_the_scale():
    rng = np.random.default_rng(2)
    truth = rng.random((3, 24, 24)) ** 3 + 1e-3
    m = sequence_metrics(truth ** 0.5 * 9, truth)  # right in log, up to the gain a gamma gives it
    assert m["log_ssim"] > 0.999 and m["log_psnr"] > 60
    with_zeros = truth.copy()
    with_zeros[:, :2] = 0  # an 8-bit frame's black: floored, not -inf
    m = sequence_metrics(with_zeros, with_zeros)
    assert m["log_ssim"] == 1.0 and np.isfinite(m["log_psnr"])


def test_two_runs_with_the_same_checkpoint_name_get_a_row_each(tmp_path):
    """Training runs all write model.pth: their rows must not overwrite each other."""
    write_moving_edge(tmp_path / "a.h5", seconds=0.3)
    for run in ("r1", "r2"):
        (tmp_path / run).mkdir()
        shutil.copy(REPO / "weights" / "livehdr.pth", tmp_path / run / "model.pth")
    models = [str(tmp_path / "r1" / "model.pth"), str(tmp_path / "r2" / "model.pth")]
    r = run_cli("evaluate.py", tmp_path / "a.h5", "--model", models[0], "--model", models[1],
                "--device", "cpu", "--out", tmp_path / "table.md", timeout=300)
    assert r.returncode == 0, r.stderr
    rows = _table_rows(tmp_path / "table.md")
    assert set(rows) == {*DEFAULT_ROWS, *models}
    assert rows[models[0]] == rows[models[1]]  # the same weights score the same


def test_official_postprocess_and_causal_tonemapper():
    frames = np.linspace(0, 1, 2 * 50 * 50).reshape(2, 50, 50)
    out = official_postprocess(frames)
    # p1 -> 0; p99 -> 65535 -> Reinhard at 30000: 2.1845 / 3.1845 * 255 = 174.9
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 174
    tm = CausalToneMapper()
    flat, bright = tm(np.full((8, 8), 1e-3)), tm(np.full((8, 8), 1e3))
    # a flat frame is mid-grey (the filter's output is, before its first events), not black; the
    # range follows the past slowly, so a sudden brighter frame is white
    assert flat.dtype == np.uint8 and set(np.unique(flat)) <= {127, 128} and bright.min() == 255


def test_the_causal_tonemapper_survives_inf_and_nan():
    tm = CausalToneMapper()
    ramp = np.geomspace(1e-2, 1e2, 64).reshape(8, 8)
    reference = tm(ramp)
    bad = ramp.copy()
    bad[0, 0], bad[0, 1] = np.inf, np.nan
    out = tm(bad)
    assert out[0, 0] == 255 and out[0, 1] == 0  # shown as white and black
    close = lambda a: np.abs(a.astype(int) - reference).max() <= 2  # the bad pixels left its statistics
    assert close(tm(ramp))  # the range it keeps was not poisoned
    assert tm(np.full((8, 8), np.nan)).max() == 0 and close(tm(ramp))


def test_psnr_is_capped_at_100_db():
    """One exact frame, such as a blank output on an all-black one, must not make the mean inf."""
    a = np.zeros((8, 8))
    assert psnr(a, a) == MAX_PSNR_DB == 100.0
    truth = np.stack([np.full((8, 8), 0.5), np.zeros((8, 8))])
    m = sequence_metrics(np.zeros_like(truth), truth)
    assert np.isfinite(m["psnr"]) and np.isfinite(m["mu_psnr"])


def replace_image(path, index, image):
    """Rewrite one intensity image of a recording in place, keeping its attributes."""
    with h5py.File(path, "a") as f:
        name = sorted(f["images"])[index]
        attrs = dict(f["images"][name].attrs)
        del f["images"][name]
        f["images"].create_dataset(name, data=image).attrs.update(attrs)


def _nan_frame(path):
    replace_image(path, 2, np.full((48, 64), np.nan, np.float32))


def _small_frame(path):
    replace_image(path, 2, np.zeros((40, 64), np.uint16))


def _other_sensor(path):
    with h5py.File(path, "a") as f:
        f.attrs["sensor_resolution"] = np.array([50, 64])


def _no_frames(path):
    events = write_moving_edge(path, seconds=0.3)
    with EventH5Writer(path, 48, 64) as w:
        w.add_events(events)


@pytest.mark.parametrize("spoil, message", [
    (_nan_frame, "the intensity image at 120000 us holds NaN or inf"),
    (_small_frame, "an intensity image at 120000 us is 40x64, not the sensor's 48x64"),
    (_other_sensor, "an intensity image at 40000 us is 48x64, not the sensor's 50x64"),
    (_no_frames, "has no intensity frames"),
], ids=["nan", "image-size", "sensor-size", "no-frames"])
def test_bad_ground_truth_is_one_line_naming_the_file(tmp_path, spoil, message):
    write_moving_edge(tmp_path / "good.h5", seconds=0.3)
    write_moving_edge(tmp_path / "bad.h5", seconds=0.3)
    spoil(tmp_path / "bad.h5")
    r = run_cli("evaluate.py", tmp_path / "good.h5", tmp_path / "bad.h5")
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith(f"error: {tmp_path / 'bad.h5'}: "), r.stderr
    assert message in last and "Traceback" not in r.stderr and r.stdout == ""
    if spoil is _no_frames:  # found as the files are listed, before the first is evaluated
        assert "evaluating" not in r.stderr


@pytest.mark.parametrize("out, message", [
    ("a.h5", "is one of the recordings"), ("table.hdf5", "an HDF5 name"), (".", "is a folder"),
])
def test_evaluate_out_is_refused_before_any_work_where_it_would_overwrite_a_recording(tmp_path, out, message):
    write_moving_edge(tmp_path / "a.h5", seconds=0.3)
    before = (tmp_path / "a.h5").read_bytes()
    r = run_cli("evaluate.py", tmp_path / "a.h5", "--out", tmp_path / out)
    assert r.returncode == 2 and r.stderr.startswith("error: --out") and message in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "evaluating" not in r.stderr
    assert (tmp_path / "a.h5").read_bytes() == before and not (tmp_path / "table.hdf5").exists()


def test_a_folder_of_hdf5_files_is_evaluated(tmp_path):
    write_moving_edge(tmp_path / "a.hdf5", seconds=0.3)
    write_moving_edge(tmp_path / "b.HDF", seconds=0.3)
    r = run_cli("evaluate.py", tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("2 sequence(s): a.hdf5, b.HDF")


def test_threads_sets_torchs_count_and_refuses_a_negative_one(tmp_path):
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        set_threads(0)  # torch's default: left as it is
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(InputError):
        set_threads(-1)
    write_moving_edge(tmp_path / "a.h5", seconds=0.3)
    r = run_cli("evaluate.py", tmp_path / "a.h5", "--threads", "-1")
    assert r.returncode == 2 and r.stderr.strip() == "error: --threads -1: give a positive count, or 0 for torch's default"
