"""One way to build a reconstructor from the `model:` section of a configuration."""
from streaming.datatypes import Reconstructor


def make_reconstructor(model_cfg: dict, height: int, width: int, device: str = "cpu") -> Reconstructor:
    kind = model_cfg["type"]
    if kind == "highpass":
        from model.highpass import HighPassFilter
        return HighPassFilter(height, width, **{k: v for k, v in model_cfg.items() if k != "type"})
    from model.stream import load_eventhdr
    return load_eventhdr(model_cfg.get("weights"), model_cfg.get("arch"), height, width, device)
