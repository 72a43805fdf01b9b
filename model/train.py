"""Train an EventHDR network on recordings with ground-truth frames.

    python train.py DATA_DIR --config eventhdr_cpu --out runs/cpu --iters 3000
    python train.py DATA_DIR --init official.pth --config eventhdr --out runs/finetune   # fine-tune

Samples are clips of consecutive frame-aligned windows (the official evaluation's windows),
randomly cropped and flipped. Each clip runs through the recurrent network from a zero state;
back-propagation is truncated every `--tbptt` outputs (the state is carried on, detached),
and the first `--burn-in` outputs are not scored. Targets are divided by the 99th
percentile of their clip's whole frames (or of the crop: `--target-scale crop`). Loss per
output: L1 on linear values + L1 after mu-law compression (so that the dark decades count)
+ a structural term (1 - SSIM); plus temporal consistency (the change between consecutive
outputs should match the ground truth's); with --protocol-loss and --protocol-ssim, the
evaluation's own squared error and SSIM too. Re-running the same command resumes; a larger
--iters lengthens the run.

OUT holds `last.pt` (everything needed to resume: weights, optimiser, iteration, RNG) and
`model.pth` (the weights alone, as the pipeline loads them), and `train.log`. Both are also
written when the run is interrupted (Ctrl-C), so that a resume loses nothing; --snapshots keeps
each save's weights as well. A resume keeps the run's network, --init, --lr, --seed,
--protocol-loss and --protocol-ssim: giving others is refused.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.checkpoint import load_checkpoint, load_error, save_checkpoint
from model.eventhdr import EventHDRWrapper, make_arch
from model.evaluate import frame_windows, recordings
from model.factory import THREADS_HELP, set_threads
from streaming.config import load_config, resolve_device
from streaming.datatypes import InputError
from streaming.exits import check_output_dir

# the loss's mu-law, milder than the metric's 5000: the dark decades count without drowning the
# bright ones the metric weighs
LOSS_MU = 100.0
# what a resumed run keeps from its start: they shape the whole run
RESUME_KEPT = ("init", "lr", "seed", "protocol_loss", "protocol_ssim")


class ClipDataset:
    """Every recording's frame-aligned voxel grids and ground truth, held in memory."""

    def __init__(self, paths: list[Path], bins: int = 5):
        self.paths, self.grids, self.truth, self.p99 = list(paths), [], [], []
        for p in tqdm(paths, desc="loading recordings"):
            wins, truth, _ = frame_windows(p, bins)
            self.grids.append(np.stack([w.grid for w in wins]).astype(np.float16))
            self.truth.append(truth.astype(np.float32))
            self.p99.append(np.percentile(self.truth[-1], 99, axis=(1, 2)))
        if not self.grids:
            raise InputError("no training recordings found")

    def check(self, clip: int, crop: int) -> None:
        """Every recording must hold a clip (its windows and a neighbour each side) and a crop."""
        for p, g in zip(self.paths, self.grids):
            if len(g) < clip + 2:
                raise InputError(f"{p}: {len(g)} frames, too few for --clip {clip} (needs {clip + 2})")
            if min(g.shape[2:]) < crop:
                raise InputError(f"{p}: frames of {g.shape[2]}x{g.shape[3]}, too small for --crop {crop}")

    def sample(self, rng, batch: int, clip: int, crop: int, scale: str = "frames"):
        """(grids (B, clip+2, C, crop, crop), truth (B, clip, crop, crop)): window k+1's ground
        truth goes with the output centred on it, divided by the 99th percentile of the clip's
        whole frames (scale "frames", the evaluation's) or of the crop ("crop")."""
        g_out, t_out = [], []
        for _ in range(batch):
            i = rng.integers(len(self.grids))
            g, t = self.grids[i], self.truth[i]
            s = rng.integers(0, len(g) - clip - 1)
            y, x = rng.integers(0, g.shape[2] - crop + 1), rng.integers(0, g.shape[3] - crop + 1)
            gg = g[s:s + clip + 2, :, y:y + crop, x:x + crop].astype(np.float32)
            tt = t[s + 1:s + clip + 1, y:y + crop, x:x + crop]
            if rng.random() < 0.5:
                gg, tt = gg[..., ::-1], tt[..., ::-1]
            if rng.random() < 0.5:
                gg, tt = gg[..., ::-1, :], tt[..., ::-1, :]
            g_out.append(gg.copy())
            p99 = self.p99[i][s + 1:s + clip + 1].mean() if scale == "frames" else np.percentile(tt, 99)
            t_out.append(tt / max(float(p99), 1e-4))
        return torch.from_numpy(np.stack(g_out)), torch.from_numpy(np.stack(t_out)).unsqueeze(2)


def signed_mu_law(x):
    """mu-law compression extended to negative values, so that a negative output is pulled up
    (a clamp there would give it no gradient, and a network can die at a constant)."""
    return torch.sign(x) * torch.log1p(LOSS_MU * x.abs()) / math.log1p(LOSS_MU)


def ssim_loss(a, b, c1=1e-4, c2=9e-4):
    """1 - SSIM with a 7x7 box window, on values above 1 clipped as the official protocol does."""
    a, b = a.clamp(max=1), b.clamp(max=1)
    pool = lambda z: F.avg_pool2d(z, 7, 1, 3, count_include_pad=False)
    ma, mb = pool(a), pool(b)
    va, vb, cov = pool(a * a) - ma ** 2, pool(b * b) - mb ** 2, pool(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    return 1 - s.mean()


def protocol_normalise(x):
    """The official evaluation's mapping (model.metrics.percentile_normalise) on each crop: its
    own 1st and 99th percentiles to 0 and 1, clipped. Differentiable through the percentiles."""
    q = torch.quantile(x.flatten(1), x.new_tensor([0.01, 0.99]), dim=1).view(2, -1, 1, 1, 1)
    return ((x - q[0]) / (q[1] - q[0] + 1e-5)).clamp(0, 1)


def frame_loss(out, target, protocol: tuple[float, float] = (0.0, 0.0)):
    """L1 on linear values, L1 after mu-law compression, and a structural term. The structure
    is compared at each crop's own scale: at the frames' scale a crop of a dark region is
    near zero, SSIM's constants swamp its texture, and a blank output costs nothing there.
    protocol: the weights of the evaluation's own squared error and 1 - SSIM (after its
    normalisation), which the other terms miss: trained on them alone, our weights' outputs,
    mapped by their own percentiles as the evaluation maps them, came out too bright (halved
    after the mapping, they scored 0.25 dB more PSNR on held-out scenes). The structural term
    above does not map the output by its own percentiles, so it cannot stand in for the second."""
    crop_scale = torch.quantile(target.flatten(1), 0.99, dim=1).clamp(min=1e-3).view(-1, 1, 1, 1)
    loss = F.l1_loss(out, target) + F.l1_loss(signed_mu_law(out), signed_mu_law(target)) \
        + 0.5 * ssim_loss(out / crop_scale, target / crop_scale)
    if any(protocol):
        mapped_out, mapped_target = protocol_normalise(out), protocol_normalise(target)
        loss = loss + protocol[0] * F.mse_loss(mapped_out, mapped_target) \
            + protocol[1] * ssim_loss(mapped_out, mapped_target)
    return loss


def clip_loss(net, grids, truth, tbptt: int, optimiser=None, burn_in: int = 0,
              protocol: tuple[float, float] = (0.0, 0.0)):
    """Run a clip through the recurrent network, one optimiser step every `tbptt` outputs with
    the state carried on, detached (truncated back-propagation through time). Within a
    chunk each window's features are computed once, as the streaming wrapper does. The first
    `burn_in` outputs are not scored: from a zero state, nothing can know the static scene yet.
    protocol: see frame_loss."""
    state, prev_out, total = None, None, 0.0
    steps, nf = truth.shape[1], net.model.num_frame
    for c0 in range(0, steps, tbptt):
        c1 = min(c0 + tbptt, steps)
        chunk = grids[:, c0:c1 + nf - 1]
        pyramids = [lvl.unflatten(0, chunk.shape[:2]) for lvl in net.model.extract(chunk.flatten(0, 1))]
        loss = 0.0
        for k in range(c0, c1):
            frames = [tuple(lvl[:, k - c0 + i] for lvl in pyramids) for i in range(nf)]
            out, state = net.model.predict(frames, state)
            if k >= burn_in:
                loss = loss + frame_loss(out, truth[:, k], protocol)
                if prev_out is not None:
                    loss = loss + 0.5 * F.l1_loss(out - prev_out, truth[:, k] - truth[:, k - 1])
            prev_out = out
        if torch.is_tensor(loss):  # a chunk of burn-in alone has nothing to learn from
            if optimiser is not None:
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimiser.step()
            total += loss.item()
        state = tuple(s.detach() for s in state)
        prev_out = prev_out.detach()
    return total / max(steps - burn_in, 1)


def resume(out: Path, args, net, optimiser, rng, device) -> int:
    """Load the run in OUT (its last.pt) into the network, optimiser and generator; returns
    the iteration it reached."""
    path = out / "last.pt"
    try:
        last = torch.load(path, map_location=device, weights_only=True)  # resumable elsewhere
    except Exception as e:  # noqa: BLE001  damaged or not a PyTorch file: either way it cannot resume
        raise InputError(f"{path}: cannot be resumed ({load_error(e)}); give another --out, or delete it "
                         "to start this run afresh") from None
    if not isinstance(last, dict) or not {"model", "optimiser", "rng", "iter"} <= last.keys():
        raise InputError(f"{path}: not a train.py checkpoint; give another --out, or delete it to start afresh")
    started = last.get("args", {})  # runs saved before last.pt kept their arguments: nothing to compare
    changed = [k for k in RESUME_KEPT if k in started and started[k] != getattr(args, k)]
    if changed:
        flags = [f"--{k.replace('_', '-')}" for k in changed]
        given = [f"{f} {started[k]}" if started[k] is not None else f"no {f}" for f, k in zip(flags, changed)]
        raise InputError(f"{out} was started with {', '.join(given)}; a resume keeps the run's settings: give the same, "
                         "or another --out for a new run")
    if {k: v.shape for k, v in last["model"].items()} != {k: v.shape for k, v in net.state_dict().items()}:
        config = f"--config {started.get('config') or 'eventhdr_cpu (the default)'}" if started else "another --config"
        raise InputError(f"{out} was started with {config}, whose network differs from this one: resume with it, "
                         "or give another --out for a new run")
    if last["iter"] > args.iters:
        raise InputError(f"{out} is at iteration {last['iter']} already: give --iters {last['iter']} or more to "
                         "resume or lengthen it, or another --out for a new run")
    net.load_state_dict(last["model"])
    optimiser.load_state_dict(last["optimiser"])
    rng.bit_generator.state = last["rng"]
    return last["iter"]


def trim_log(path: Path, iters: int) -> None:
    """Keep the log's first ITERS lines (one per iteration): a run killed between periodic
    saves, or interrupted between a line and its save, logged iterations that the resume redoes."""
    if path.exists():
        lines = path.read_text().splitlines(keepends=True)
        if len(lines) > iters:
            path.write_text("".join(lines[:iters]))


def save(out: Path, args, net, optimiser, rng_state: dict, iters: int) -> None:
    """last.pt (to resume) and model.pth (to use), each replaced whole; with --snapshots also
    a copy of model.pth that the next save leaves alone."""
    torch.save({"model": net.state_dict(), "optimiser": optimiser.state_dict(), "rng": rng_state,
                "iter": iters, "args": vars(args)}, out / "last.pt.tmp")
    (out / "last.pt.tmp").replace(out / "last.pt")
    save_checkpoint(out / "model.pth", net, {"trained_by": "model/train.py", "iters": iters, "args": vars(args)})
    if args.snapshots:
        shutil.copyfile(out / "model.pth", out / f"model_{iters:06d}.pth")


def main(argv=None) -> int:
    args = _arguments(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    out = Path(args.out)
    check_output_dir(out, "--out")
    files = recordings(args.data)
    torch.manual_seed(args.seed)  # before the network is built: --seed fixes its initial weights
    net = _network(args).to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    start = resume(out, args, net, optimiser, rng, device) if (out / "last.pt").exists() else 0
    # built after resuming, so that a resumed run may also be lengthened with a larger --iters
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, args.lr, total_steps=args.iters, pct_start=0.05,
                                                   last_epoch=start - 1)
    data = ClipDataset(files, bins=net.model.arch["num_in_ch"] // 2)
    data.check(args.clip, args.crop)
    out.mkdir(parents=True, exist_ok=True)  # once every setting is known to be good
    trim_log(out / "train.log", start)
    bar = tqdm(range(start, args.iters), initial=start, total=args.iters, desc="training")
    t0 = time.monotonic()
    done, rng_state = start, rng.bit_generator.state  # where the run stands after whole iterations
    with open(out / "train.log", "a") as log:
        try:
            for it in bar:
                grids, truth = data.sample(rng, args.batch, args.clip, args.crop, args.target_scale)
                lr = schedule.get_last_lr()[0]  # this step's (after step(), the next one's)
                loss = clip_loss(net, grids.to(device), truth.to(device), args.tbptt, optimiser, args.burn_in,
                                 (args.protocol_loss, args.protocol_ssim))
                schedule.step()
                bar.set_postfix(loss=f"{loss:.4f}")
                # flushed as written: the log shows the run as it goes, and ends where last.pt does
                log.write(json.dumps({"iter": it + 1, "loss": loss, "lr": lr,
                                      "elapsed_s": round(time.monotonic() - t0, 1)}) + "\n")
                log.flush()
                done, rng_state = it + 1, rng.bit_generator.state
                if done % 100 == 0 or done == args.iters:
                    save(out, args, net, optimiser, rng_state, done)
        except KeyboardInterrupt:
            # Saved, or up to 99 iterations would be lost. The weights may hold a step of the
            # unfinished iteration: harmless, as the resume redoes it from its start.
            save(out, args, net, optimiser, rng_state, done)
            raise
    print(f"weights: {out / 'model.pth'} (iteration {done}); to resume or lengthen: the same command")
    return 0


def _arguments(argv) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="+", help="folders of HDF5 recordings with ground-truth frames (or files)")
    ap.add_argument("--config", help="architecture: a config name or YAML (default eventhdr_cpu; with --init: "
                                     "the checkpoint's, which a --config given must match)")
    ap.add_argument("--init", help="start from these weights (official EventHDR or ours): fine-tuning")
    ap.add_argument("--out", required=True, help="run folder (resumes if it holds last.pt)")
    ap.add_argument("--iters", type=int, default=3000, help="training steps (default 3000)")
    ap.add_argument("--batch", type=int, default=16,
                    help="clips per step (default 16; many small ones: a diverse batch keeps the network off a blank "
                         "image)")
    ap.add_argument("--clip", type=int, default=8, help="outputs per clip (default 8)")
    ap.add_argument("--tbptt", type=int, default=4, help="outputs between truncations (default 4)")
    ap.add_argument("--burn-in", type=int, default=2, help="outputs at the start of a clip left unscored (default 2)")
    ap.add_argument("--crop", type=int, default=32, help="crop side, a multiple of 16 (default 32)")
    ap.add_argument("--target-scale", choices=("frames", "crop"), default="frames",
                    help="divide targets by the 99th percentile of the clip's whole frames (default; the "
                         "evaluation's scale) or of the crop (learns structure sooner, but lights up dark regions)")
    ap.add_argument("--protocol-loss", type=float, default=0.0, metavar="WEIGHT",
                    help="weight of a squared-error term on each crop mapped to [0, 1] by its own 1st/99th percentiles, "
                         "as the evaluation maps each sequence (default 0: off; weights/README.md has runs with 2 to 8)")
    ap.add_argument("--protocol-ssim", type=float, default=0.0, metavar="WEIGHT",
                    help="weight of 1 - SSIM on each crop mapped as --protocol-loss maps it (default 0: off; the "
                         "shipped weights' last stage used 0.1)")
    ap.add_argument("--lr", type=float, default=1e-3,
                    help="peak learning rate of the one-cycle schedule (default 1e-3)")
    ap.add_argument("--seed", type=int, default=0, help="of the initial weights and the clips drawn (default 0)")
    ap.add_argument("--snapshots", action="store_true",
                    help="keep the weights of every save (every 100 iterations) as OUT/model_NNNNNN.pth, to choose "
                         "one afterwards on held-out recordings with evaluate.py")
    ap.add_argument("--threads", type=int, default=0, help=THREADS_HELP)
    ap.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:N]",
                    help="where to train (default auto: the first CUDA GPU torch sees, else the CPU)")
    args = ap.parse_args(argv)
    for flag in ("iters", "batch", "clip", "tbptt", "crop", "lr"):
        if not 0 < getattr(args, flag) < math.inf:
            raise InputError(f"--{flag} must be positive, got {getattr(args, flag)}")
    for flag in ("protocol_loss", "protocol_ssim"):
        if not 0 <= getattr(args, flag) < math.inf:
            raise InputError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: give a weight of 0 (off) or more")
    if args.crop % 16:
        raise InputError(f"--crop {args.crop}: must be a multiple of 16")
    if not 0 <= args.burn_in < args.clip:
        raise InputError(f"--burn-in {args.burn_in}: must be at least 0 and less than --clip ({args.clip}), "
                         "or no output is scored")
    if not 0 <= args.seed < 2 ** 64:  # what numpy and torch take
        raise InputError(f"--seed {args.seed}: give a whole number from 0 to 2**64 - 1")
    return args


def _network(args) -> EventHDRWrapper:
    """The network to train: --config's architecture from scratch, or --init's weights (whose
    architecture a --config given must match)."""
    cfg = load_config(args.config or "eventhdr_cpu")
    if cfg.model["type"] != "eventhdr":
        raise InputError(f"--config {args.config}: its model is {cfg.model['type']}, which has nothing to train; "
                         "give an EventHDR configuration (eventhdr_cpu, eventhdr, or a YAML with an arch)")
    if not args.init:
        return EventHDRWrapper(**make_arch(cfg.model.get("arch")))
    arch, state_dict = load_checkpoint(args.init)
    if args.config and make_arch(cfg.model.get("arch")) != arch:
        raise InputError(f"--init {args.init} holds the network {arch}, but --config {args.config} describes "
                         f"{make_arch(cfg.model.get('arch'))}; fine-tuning keeps the checkpoint's: drop --config")
    net = EventHDRWrapper(**arch)
    net.load_state_dict(state_dict)
    return net