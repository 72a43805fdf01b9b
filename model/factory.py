"""One way to build a reconstructor from the `model:` section of a configuration."""
from streaming.config import resolve_device
from streaming.datatypes import InputError, Reconstructor


def make_reconstructor(model_cfg: dict, height: int, width: int, device: str = "auto") -> Reconstructor:
    """device: where the network runs (see resolve_device); the filter runs on the CPU."""
    kind = model_cfg["type"]
    if kind == "highpass":
        from model.highpass import HighPassFilter
        settings = {k: v for k, v in model_cfg.items() if k != "type"}
        unknown = set(settings) - {"cutoff_hz", "contrast"}
        if unknown:
            raise InputError(f"model highpass: unknown settings {', '.join(sorted(unknown))}; "
                             f"known: cutoff_hz, contrast")
        if not all(isinstance(v, (int, float)) and v >= 0 for v in settings.values()) or \
                settings.get("contrast", 1) == 0:
            raise InputError(f"model highpass: cutoff_hz must be >= 0 and contrast > 0, got {settings}")
        return HighPassFilter(height, width, **settings)
    if not model_cfg.get("weights"):  # random weights give noise that looks like a broken program
        raise InputError("model eventhdr has no weights: give --model CHECKPOINT (the official EventHDR "
                         "checkpoint, or ours: --config eventhdr_cpu), or set weights: in the config")
    from model.stream import load_eventhdr
    return load_eventhdr(model_cfg.get("weights"), model_cfg.get("arch"), height, width, resolve_device(device))
