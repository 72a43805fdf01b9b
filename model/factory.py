"""One way to build a reconstructor from the `model:` section of a configuration."""
import functools
import math
from pathlib import Path

from streaming.config import check_device
from streaming.datatypes import Reconstructor
from streaming.errors import InputError


def resolve_device(name: str) -> str:
    """The torch device for the network: 'auto' is the first CUDA GPU where torch sees one, else
    the CPU. Asking for a GPU that is not there is the user's mistake, not a silent fallback."""
    check_device(name)
    import torch  # here, not at the top: the filter's runs never load torch
    if name == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        index = int(name.partition(":")[2] or 0)
        if not torch.cuda.is_available():
            raise InputError(f"device {name}: torch sees no CUDA GPU here; use --device cpu (or auto)")
        if index >= torch.cuda.device_count():
            raise InputError(f"device {name}: torch sees {torch.cuda.device_count()} CUDA GPU(s), "
                             f"numbered from 0")
        return f"cuda:{index}"
    return name


def run_device(model_cfg: dict, name: str) -> str:
    """The device a run's model gets (a config's or --device's `name`): the filter runs on the CPU."""
    return "cpu" if model_cfg["type"] == "highpass" else resolve_device(name)


def make_reconstructor(model_cfg: dict, height: int, width: int, device: str = "cpu",
                       live: bool = False) -> Reconstructor:
    """device: where the network runs, as resolve_device gives it; the filter runs on the CPU.
    live: a network on the CPU leaves one core to reading the camera or the paced recording (see below)."""
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
    if kind in ("pienet", "pienet-lite"):
        from model.pienet import PIENetStream
        model = PIENetStream(kind, device)
    elif not model_cfg.get("weights"):  # random weights give noise that looks like a broken program
        raise InputError(f"model {kind} has no weights: give --model CHECKPOINT (ours, or the official EventHDR "
                         "checkpoint), or set weights: in the config")
    else:
        from model.networks.stream import load_network
        family = None if kind == "checkpoint" else kind  # None: whichever network the file holds
        model = load_network(model_cfg["weights"], family, model_cfg.get("arch"), height, width, device,
                             bf16=use_bf16(model_cfg.get("precision", "auto"), device))
    if live and device == "cpu":
        import torch
        torch.set_num_threads(live_threads())
    return model


PRECISIONS = ("auto", "bf16", "fp32")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AMX or AVX-512 BF16), where oneDNN runs bf16
    convolutions several times faster than float32. Elsewhere bf16 is emulated, and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no way to tell here, so the safe float32
        return False
    return any(f in flags.split() for f in ("amx_bf16", "avx512_bf16"))


def use_bf16(precision: str, device: str) -> bool:
    """A config's `precision:` (auto: bf16 on a CPU that has it natively) for a network on `device`."""
    if precision not in PRECISIONS:
        raise InputError(f"model precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return device == "cpu" and cpu_has_bf16()
    return precision == "bf16"


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
    on 2 cores, the former default network (EventHDR at 5 features) from a DV stream: 1.9-2.0
    frames/s with 1 thread, 0.9-1.0 with 2."""
    import torch
    return max(1, torch.get_num_threads() - 1)
