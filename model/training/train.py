"""Train a reconstruction network on recordings with ground-truth frames.

    python train.py DATA_DIR --out runs/live --iters 20000                   # our network (configs/livehdr.yaml)
    python train.py DATA_DIR --config eventhdr --init official.pth --out runs/finetune   # fine-tune EventHDR

Samples are clips of consecutive frame-aligned windows (the official evaluation's windows),
randomly cropped and flipped. Each clip runs through the recurrent network from a zero state;
back-propagation is truncated every `--tbptt` outputs (the state is carried on, detached),
and the first `--burn-in` outputs are not scored: from a zero state, nothing can know the
static scene yet. Loss per output (model.training.losses): L1 on log radiance up to an offset, SSIM on
log radiance and on linear radiance each mapped by its crop's percentiles as the evaluation
maps a sequence, the evaluation's own squared error; plus temporal consistency (the change of
log radiance between consecutive outputs should match the ground truth's). On a CPU with native
bf16 (AMX or AVX-512 BF16) the network runs under bf16 autocast (--precision). Re-running the
same command resumes; a larger --iters lengthens the run.

OUT holds `last.pt` (everything needed to resume: weights, optimiser, iteration, RNG) and
`model.pth` (the weights alone, as the pipeline loads them), and `train.log`. Both are also
written when the run is interrupted (Ctrl-C), so that a resume loses nothing; --snapshots keeps
each save's weights as well. A resume keeps the run's network, --init, --lr and --seed: giving
others is refused.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.evaluation.evaluate import frame_windows, recordings
from model.factory import PRECISIONS, THREADS_HELP, resolve_device, set_threads, use_bf16
from model.networks.checkpoint import load_checkpoint, load_error, save_checkpoint
from model.networks.registry import NETWORKS, build_network, checked_arch
from model.training.losses import frame_loss, temporal_loss
from streaming.config import load_config
from streaming.errors import InputError
from streaming.exits import check_output_dir

DEFAULT_CONFIG = "livehdr"
# what a resumed run keeps from its start: they shape the whole run
RESUME_KEPT = ("init", "lr", "seed")


class ClipDataset:
    """Every recording's frame-aligned voxel grids and ground truth, held in memory. A recording
    listed twice (two links to one file: a mix that weighs some scenes more) is drawn twice as
    often but held once."""

    def __init__(self, paths: list[Path], bins: int = 5):
        self.paths, self.grids, self.truth, self.p99 = list(paths), [], [], []
        held = {}
        for p in tqdm(paths, desc="loading recordings"):
            if (key := Path(p).resolve()) not in held:
                wins, truth, _ = frame_windows(p, bins)
                truth = truth.astype(np.float32)
                held[key] = (np.stack([w.grid for w in wins]).astype(np.float16), truth,
                             np.percentile(truth, 99, axis=(1, 2)))
            for kept, array in zip((self.grids, self.truth, self.p99), held[key]):
                kept.append(array)
        if not self.grids:
            raise InputError("no training recordings found")

    def check(self, windows: int, crop: int) -> None:
        """Every recording must hold a clip's windows and a crop."""
        for p, g in zip(self.paths, self.grids):
            if len(g) < windows:
                raise InputError(f"{p}: {len(g)} frames, too few for a clip of {windows} windows (--clip and the "
                                 "network's look-ahead)")
            if min(g.shape[2:]) < crop:
                raise InputError(f"{p}: frames of {g.shape[2]}x{g.shape[3]}, too small for --crop {crop}")

    def sample(self, rng, batch: int, clip: int, crop: int, lookahead: int = 0):
        """(grids (B, clip + 2 * lookahead, C, crop, crop), truth (B, clip, 1, crop, crop)): the
        ground truth of window k + lookahead goes with output k (a network with look-ahead sees
        that many windows each side of the one it outputs), divided by the 99th percentile of
        the clip's whole frames (the evaluation's scale)."""
        g_out, t_out = [], []
        for _ in range(batch):
            i = rng.integers(len(self.grids))
            g, t = self.grids[i], self.truth[i]
            s = rng.integers(0, len(g) - clip - 2 * lookahead + 1)
            y, x = rng.integers(0, g.shape[2] - crop + 1), rng.integers(0, g.shape[3] - crop + 1)
            gg = g[s:s + clip + 2 * lookahead, :, y:y + crop, x:x + crop].astype(np.float32)
            tt = t[s + lookahead:s + lookahead + clip, y:y + crop, x:x + crop]
            if rng.random() < 0.5:
                gg, tt = gg[..., ::-1], tt[..., ::-1]
            if rng.random() < 0.5:
                gg, tt = gg[..., ::-1, :], tt[..., ::-1, :]
            g_out.append(gg.copy())
            p99 = self.p99[i][s + lookahead:s + lookahead + clip].mean()
            t_out.append(tt / max(float(p99), 1e-4))
        return torch.from_numpy(np.stack(g_out)), torch.from_numpy(np.stack(t_out)).unsqueeze(2)


def clip_loss(net, grids, truth, tbptt: int, optimiser=None, burn_in: int = 0, bf16: bool = False):
    """Run a clip through the recurrent network, one optimiser step every `tbptt` outputs with
    the state carried on, detached (truncated back-propagation through time). The first
    `burn_in` outputs are not scored. bf16: the network under bf16 autocast (the losses in float32)."""
    state, prev_error, total = None, None, 0.0
    steps, la = truth.shape[1], net.lookahead
    for c0 in range(0, steps, tbptt):
        c1 = min(c0 + tbptt, steps)
        with torch.autocast("cpu", torch.bfloat16) if bf16 else contextlib.nullcontext():
            outputs, state = net.clip(grids[:, c0:c1 + 2 * la], state)
        loss = 0.0
        for k, out in zip(range(c0, c1), outputs):
            term, error = frame_loss(out.float(), truth[:, k], net.log_output)
            if k >= burn_in:
                loss = loss + term
                if prev_error is not None:
                    loss = loss + temporal_loss(error, prev_error)
            prev_error = error
        if torch.is_tensor(loss):  # a chunk of burn-in alone has nothing to learn from
            if optimiser is not None:
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimiser.step()
            total += loss.item()
        state = tuple(s.detach() for s in state)
        prev_error = prev_error.detach()
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
        config = f"--config {started.get('config') or DEFAULT_CONFIG + ' (the default)'}" if started else "another --config"
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
    save_checkpoint(out / "model.pth", net, {"trained_by": "model/training/train.py", "iters": iters, "args": vars(args)})
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
    bf16 = use_bf16(args.precision, device) if device == "cpu" else False  # autocast here is the CPU's
    data = ClipDataset(files, bins=net.bins)
    data.check(args.clip + 2 * net.lookahead, args.crop)
    out.mkdir(parents=True, exist_ok=True)  # once every setting is known to be good
    trim_log(out / "train.log", start)
    bar = tqdm(range(start, args.iters), initial=start, total=args.iters, desc="training")
    t0 = time.monotonic()
    done, rng_state = start, rng.bit_generator.state  # where the run stands after whole iterations
    with open(out / "train.log", "a") as log:
        try:
            for it in bar:
                grids, truth = data.sample(rng, args.batch, args.clip, args.crop, net.lookahead)
                lr = schedule.get_last_lr()[0]  # this step's (after step(), the next one's)
                loss = clip_loss(net, grids.to(device), truth.to(device), args.tbptt, optimiser, args.burn_in, bf16)
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
    ap.add_argument("--config", help=f"network and architecture: a config name or YAML (default {DEFAULT_CONFIG}, "
                                     "our network; with --init: the checkpoint's, which a --config given must match)")
    ap.add_argument("--init", help="start from these weights (ours, or the official EventHDR): fine-tuning")
    ap.add_argument("--out", required=True, help="run folder (resumes if it holds last.pt)")
    ap.add_argument("--iters", type=int, default=3000, help="training steps (default 3000)")
    ap.add_argument("--batch", type=int, default=16,
                    help="clips per step (default 16; many small ones: a diverse batch keeps the network off a blank "
                         "image)")
    ap.add_argument("--clip", type=int, default=8, help="outputs per clip (default 8)")
    ap.add_argument("--tbptt", type=int, default=4, help="outputs between truncations (default 4)")
    ap.add_argument("--burn-in", type=int, default=2, help="outputs at the start of a clip left unscored (default 2)")
    ap.add_argument("--crop", type=int, default=32, help="crop side, a multiple of 16 (default 32)")
    ap.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="on a CPU: the network under bf16 autocast or float32 (default auto: bf16 where the CPU has it "
                         "natively, AMX or AVX-512 BF16)")
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
    if args.crop % 16:
        raise InputError(f"--crop {args.crop}: must be a multiple of 16")
    if not 0 <= args.burn_in < args.clip:
        raise InputError(f"--burn-in {args.burn_in}: must be at least 0 and less than --clip ({args.clip}), "
                         "or no output is scored")
    if not 0 <= args.seed < 2 ** 64:  # what numpy and torch take
        raise InputError(f"--seed {args.seed}: give a whole number from 0 to 2**64 - 1")
    return args


def _network(args):
    """The network to train: --config's architecture from scratch, or --init's weights (whose
    network and architecture a --config given must match)."""
    cfg = load_config(args.config or DEFAULT_CONFIG)
    family = cfg.model["type"]
    if family not in NETWORKS:
        raise InputError(f"--config {args.config}: its model is {family}, which has nothing to train; give a configuration "
                         f"of one of our networks ({', '.join(NETWORKS)}), such as {DEFAULT_CONFIG} or eventhdr")
    if not args.init:
        return build_network(family, cfg.model.get("arch"))
    ckpt_family, arch, state_dict = load_checkpoint(args.init)
    config_arch = checked_arch(family, cfg.model.get("arch"))
    if args.config and (ckpt_family != family or config_arch != arch):
        raise InputError(f"--init {args.init} holds the {ckpt_family} network {arch}, but --config {args.config} "
                         f"describes {family} {config_arch}; fine-tuning keeps the checkpoint's: drop --config")
    net = build_network(ckpt_family, arch)
    net.load_state_dict(state_dict)
    return net
