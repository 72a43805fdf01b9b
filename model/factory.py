"""One way to build a reconstructor from the `model:` section of a configuration."""
import functools
import math

from streaming.config import resolve_device
from streaming.datatypes import InputError, Reconstructor


def make_reconstructor(model_cfg: dict, height: int, width: int, device: str = "auto",
                       live: bool = False) -> Reconstructor:
    """device: where the network runs (see resolve_device); the filter runs on the CPU.
    live: a network on the CPU leaves one core to reading the camera (see below)."""
    kind = model_cfg["type"]
    if kind == "highpass":
        from model.highpass import HighPassFilter
        settings = {k: v for k, v in model_cfg.items() if k != "type"}
        unknown = set(settings) - {"cutoff_hz", "contrast"}
        if unknown:
            raise InputError(f"model highpass: unknown settings {', '.join(sorted(unknown))}; "
                             f"known: cutoff_hz, contrast")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf
                   for v in settings.values()) or settings.get("contrast", 1) == 0:
            raise InputError(f"model highpass: cutoff_hz must be >= 0 and contrast > 0, finite numbers, got {settings}")
        return HighPassFilter(height, width, **settings)
    if not model_cfg.get("weights"):  # random weights give noise that looks like a broken program
        raise InputError("model eventhdr has no weights: give --model CHECKPOINT (the official EventHDR "
                         "checkpoint, or ours: --config eventhdr_cpu), or set weights: in the config")
    from model.stream import load_eventhdr
    device = resolve_device(device)
    model = load_eventhdr(model_cfg.get("weights"), model_cfg.get("arch"), height, width, device)
    if live and device == "cpu":
        import torch
        torch.set_num_threads(live_threads())
    return model


THREADS_HELP = "torch threads (0: torch's default, one per core; on a busy machine 1 can be faster)"


def set_threads(count: int) -> None:
    """--threads of the offline tools: 0 keeps torch's default (one per core). On a machine busy
    with other work fewer can be much faster, as the threads wait on each other (see below)."""
    if count < 0:
        raise InputError(f"--threads {count}: give a positive count, or 0 for torch's default")
    if count:
        import torch
        torch.set_num_threads(count)


@functools.cache  # read once: a reconnecting run builds its model again
def live_threads() -> int:
    """torch's threads (one per core, or OMP_NUM_THREADS) less one. They fill every core and wait
    on each other, so a camera's reader (and its driver) taking a core stalls them all. Measured
    on 2 cores, eventhdr_cpu from a DV stream: 1.9-2.0 frames/s with 1 thread, 0.9-1.0 with 2."""
    import torch
    return max(1, torch.get_num_threads() - 1)
