"""The EventHDR network against its spec (names, shapes, wiring, order) and the streaming wrapper
against the official sliding window."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.networks.eventhdr import OFFICIAL_ARCH, EventHDR, EventHDRWrapper, make_arch
from model.networks.layers import ConvLSTM, DCNPack, TSAFusion
from model.networks.stream import CentredPad, EventHDRStream, load_network
from streaming.errors import InputError, WindowRefused
from tests.conftest import REPO, SMALL, TINY, as_window, push_all, random_grids

SPEC_STATE_DICT = REPO.parent / "shared/spec/eventhdr-state-dict.txt"
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors on a shared machine: one thread


def make_net(arch: dict, dtype=torch.float64, seed=0) -> EventHDR:
    torch.manual_seed(seed)
    return EventHDR(**make_arch(arch)).to(dtype).eval()


def sliding_reference(net: EventHDR, grids: list[np.ndarray], pads: tuple[int, ...]) -> list[torch.Tensor]:
    """The official evaluation: zero-pad by (left, right, top, bottom), run windows (j-1, j, j+1)
    with the state carried, crop. One output per centre window j = 1 .. n-2."""
    dtype = next(net.parameters()).dtype
    left, _, top, _ = pads
    h, w = grids[0].shape[1:]
    x = F.pad(torch.from_numpy(np.stack(grids)).to(dtype), pads)
    outs, state = [], None
    with torch.no_grad():
        for j in range(1, len(grids) - 1):
            out, state = net(x[j - 1:j + 2][None], state)
            outs.append(out[0, 0, top:top + h, left:left + w])
    return outs


# ---- the network against the spec ----------------------------------------------------------------

@pytest.mark.skipif(not SPEC_STATE_DICT.exists(), reason="the team's shared/spec folder is not beside the repo")
def test_state_dict_names_and_shapes_are_the_specs():
    spec = []
    for line in SPEC_STATE_DICT.read_text().splitlines():
        if line.strip():
            name, shape = line.split(maxsplit=1)
            spec.append((name, json.loads(shape)))
    net = EventHDRWrapper()
    assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == spec
    assert len(spec) == 142
    assert sum(p.numel() for p in net.parameters()) == 3_286_369


def test_forward_runs_the_spec_order():
    net = make_net(TINY)
    calls = []
    for name, child in net.named_children():
        child.register_forward_pre_hook(lambda m, args, name=name: calls.append(name))
    with torch.no_grad():
        net(torch.rand(1, 3, 10, 16, 16, dtype=torch.float64))
    assert calls == ["conv_first", "feature_extraction", "conv_l2_1", "conv_l2_2", "conv_l3_1", "conv_l3_2",
                     "pcd_align", "pcd_align", "pcd_align", "fusion", "convlstm", "reconstruction", "conv_last"]


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[y, x] = x[y + dy, x + dx], zero outside."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (abs(dx), abs(dx), abs(dy), abs(dy)))
    return padded[..., abs(dy) + dy:abs(dy) + dy + h, abs(dx) + dx:abs(dx) + dx + w]


def test_dcn_pack_reads_offsets_and_mask_in_the_spec_layout():
    """Integer offsets make the deformable conv a conv of a shifted zero-padded input: group 0
    samples one row down (dy = +1 at channels g*18 + 2k) with mask 1, group 1 one column left
    (dx = -1 at g*18 + 2k + 1) with mask 0.5 (logit 0 at channel 36 + g*9 + k)."""
    torch.manual_seed(0)
    dcn = DCNPack(4, groups=2).double()
    bias = torch.zeros(2 * 27, dtype=torch.float64)
    for k in range(9):
        bias[0 * 18 + 2 * k] = 1.0    # group 0: dy
        bias[1 * 18 + 2 * k + 1] = -1.0  # group 1: dx
        bias[36 + 0 * 9 + k] = 40.0   # group 0: mask sigmoid(40) = 1 to 1e-17
    with torch.no_grad():
        dcn.conv_offset.weight.zero_()
        dcn.conv_offset.bias.copy_(bias)
        x = F.pad(torch.rand(1, 4, 6, 7, dtype=torch.float64), (1, 1, 1, 1))  # the conv's padding 1
        got = dcn(x[..., 1:-1, 1:-1], torch.rand(1, 4, 6, 7, dtype=torch.float64))
        shifted = torch.cat([_shift(x[:, :2], 1, 0), 0.5 * _shift(x[:, 2:], 0, -1)], 1)
        expected = F.conv2d(shifted, dcn.weight, dcn.bias)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_tsa_fusion_is_the_spec_formula():
    torch.manual_seed(0)
    nf, t = 4, 3
    tsa = TSAFusion(nf, t).double()
    aligned = [torch.randn(1, nf, 8, 12, dtype=torch.float64) for _ in range(t)]

    def conv(name, x):
        m = getattr(tsa, name)
        return F.conv2d(x, m.weight, m.bias, padding=m.kernel_size[0] // 2)

    def lrelu(x):
        return torch.where(x > 0, x, 0.1 * x)

    def up(x):
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def pools(x):
        return torch.cat([F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1, count_include_pad=True)], 1)

    with torch.no_grad():
        emb_ref = conv("temporal_attn1", aligned[1])
        corr = [torch.sigmoid(torch.einsum("nchw,nchw->nhw", conv("temporal_attn2", a), emb_ref))[:, None]
                for a in aligned]
        x = torch.cat([a * c for a, c in zip(aligned, corr)], 1)
        feat = lrelu(conv("feat_fusion", x))
        attn = lrelu(conv("spatial_attn1", x))
        attn = lrelu(conv("spatial_attn2", pools(attn)))
        lvl = lrelu(conv("spatial_attn_l1", attn))
        lvl = lrelu(conv("spatial_attn_l2", pools(lvl)))
        lvl = up(lrelu(conv("spatial_attn_l3", lvl)))
        attn = lrelu(conv("spatial_attn3", attn)) + lvl
        attn = up(lrelu(conv("spatial_attn4", attn)))
        attn = conv("spatial_attn5", attn)
        attn_add = conv("spatial_attn_add2", lrelu(conv("spatial_attn_add1", attn)))
        expected = feat * torch.sigmoid(attn) * 2 + attn_add
        got = tsa(aligned)
    assert got.shape == (1, nf, 8, 12)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_convlstm_gate_order_is_input_forget_output_candidate():
    lstm = ConvLSTM(2).double()
    gi, gf, go, gg = 0.3, -0.7, 1.1, 0.5
    with torch.no_grad():
        lstm.Gates.weight.zero_()
        lstm.Gates.bias.copy_(torch.tensor([gi, gi, gf, gf, go, go, gg, gg]))
        x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
        h, c = torch.randn_like(x), torch.randn_like(x)
        h1, c1 = lstm(x, (h, c))
        _, c0 = lstm(x, None)
    sig = torch.sigmoid
    expected_c = sig(torch.tensor(gf)) * c + sig(torch.tensor(gi)) * np.tanh(gg)
    torch.testing.assert_close(c1, expected_c)
    torch.testing.assert_close(h1, sig(torch.tensor(go)) * torch.tanh(expected_c))
    torch.testing.assert_close(c0, torch.full_like(x, float(sig(torch.tensor(gi)) * np.tanh(gg))))


# ---- the stream against the sliding window ---------------------------------------------------------

def test_stream_equals_sliding_window_in_float64_and_extracts_each_window_once():
    net = make_net(SMALL)
    grids = random_grids(7, 24, 40)
    extracted = []
    net.conv_first.register_forward_hook(lambda m, args, out: extracted.append(out.shape[0]))
    stream = EventHDRStream(net, 24, 40)
    outs = [stream.push_tensor(torch.from_numpy(g)) for g in grids]
    assert outs[:2] == [None, None] and all(o is not None for o in outs[2:])  # window 0 is never a centre
    assert extracted == [1] * 7  # one window at a time, each once

    ref = sliding_reference(net, grids, (4, 4, 4, 4))  # 24x40 -> 32x48
    scale = max(float(r.abs().max()) for r in ref)
    for got, want in zip(outs[2:], ref):  # push j+1 returns output j
        assert got.dtype == torch.float64 and got.shape == (1, 1, 24, 40)
        assert float((got[0, 0] - want).abs().max()) <= 1e-9 * scale


@pytest.mark.parametrize("height, width, pads", [(260, 346, (3, 3, 6, 6)), (25, 41, (4, 3, 4, 3))])
def test_stream_pads_centred_and_crops_back(height, width, pads):
    assert CentredPad(height, width).pads == pads  # (left, right, top, bottom); the odd one on top/left
    net = make_net(TINY, torch.float32)
    grids = random_grids(3, height, width)
    stream = EventHDRStream(net, height, width)
    out = push_all(stream, grids)[-1]
    assert out.dtype == np.float32 and out.shape == (height, width) and out.flags.c_contiguous
    want = sliding_reference(net, grids, pads)[0].numpy()
    assert np.abs(out - want).max() <= 1e-4 * np.abs(want).max()


def test_output_is_linear():
    net = make_net(TINY, torch.float32)
    with torch.no_grad():
        net.conv_last.weight.zero_()
        net.conv_last.bias.fill_(-7.5)
    stream = EventHDRStream(net, 20, 20)
    out = push_all(stream, random_grids(3, 20, 20))[-1]
    assert np.all(out == -7.5)  # no activation, clamp or global skip after conv_last


def test_reset_starts_a_new_sequence():
    net = make_net(SMALL, torch.float32)
    a, b = random_grids(4, 24, 40, seed=1), random_grids(4, 24, 40, seed=2)
    used = EventHDRStream(net, 24, 40)
    push_all(used, a)
    used.reset()
    after_reset = push_all(used, b)
    fresh = push_all(EventHDRStream(net, 24, 40), b)
    assert after_reset[:2] == [None, None]
    for got, want in zip(after_reset[2:], fresh[2:]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_bad_window_is_refused_before_it_touches_the_state(bad):
    net = make_net(SMALL, torch.float32)
    grids = random_grids(5, 24, 40)
    poisoned = grids[2].copy()
    poisoned[3, 5, 7] = bad
    stream = EventHDRStream(net, 24, 40)
    got = push_all(stream, grids[:2])
    with pytest.raises(WindowRefused, match="NaN or inf"):
        stream.push(as_window(99, poisoned))
    got += push_all(stream, grids[2:], 2)
    want = push_all(EventHDRStream(net, 24, 40), grids)
    for g, w in zip(got[2:], want[2:]):
        assert np.isfinite(g).all()
        np.testing.assert_array_equal(g, w)


def test_grid_of_the_wrong_shape_is_a_clear_error():
    stream = EventHDRStream(make_net(TINY, torch.float32), 24, 40)
    with pytest.raises(InputError, match="2 x bins"):
        stream.push(as_window(0, np.zeros((8, 24, 40), np.float32)))


def test_load_network_random_init_and_arch_checks():
    stream = load_network(None, "eventhdr", {**SMALL}, 24, 40)
    assert stream.lookahead == 1
    assert stream.net.arch == make_arch(SMALL)
    assert load_network(None, "eventhdr", None, 24, 40).net.arch == OFFICIAL_ARCH
    for bad, message in [({"num_feats": 8}, "unknown settings num_feats"),
                         ({"num_feat": 12, "deformable_groups": 8}, "multiple of"),
                         ({"num_frame": 4}, "odd"),
                         ({"num_in_ch": 7}, "num_in_ch must be even"),
                         ({"num_feat": 0}, "positive integer")]:
        with pytest.raises(InputError, match=message):
            load_network(None, "eventhdr", bad, 24, 40)
