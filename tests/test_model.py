import pytest

torch = pytest.importorskip("torch")

from edgeser.train.losses import CenterLoss
from edgeser.train.model import SERModel, count_params, macs_per_second, preset


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_shapes_and_geometry():
    cfg = preset("tiny", labels=("anger", "neutral", "sadness"))
    m = SERModel(cfg).eval()
    x = torch.randn(3, cfg.window_samples)
    logits, emb = m(x)
    assert logits.shape == (3, 3) and emb.shape == (3, cfg.embed_dim)
    feats, state = m.frontend(m.frame(x))
    assert feats.shape == (3, cfg.window_frames, m.frontend.feature_dim)
    assert [tuple(h.shape[1:]) for h, _ in state] == list(zip(cfg.channels, cfg.lengths()))


def test_chunked_frontend_equals_whole_window():
    cfg = preset("tiny", labels=("anger", "neutral"))
    m = SERModel(cfg).eval()
    frames = m.frame(torch.randn(1, cfg.window_samples))
    with torch.no_grad():
        whole, _ = m.frontend(frames)
        state, parts = m.frontend.zero_state(1), []
        for s in range(0, frames.shape[1], 3):
            f, state = m.frontend(frames[:, s:s + 3], state)
            parts.append(f)
    assert torch.allclose(whole, torch.cat(parts, 1), atol=1e-6)


def test_edge_preset_fits_a_pi_core_budget():
    cfg = preset("edge")
    macs = macs_per_second(cfg)
    assert macs["whole_window_per_s"] < 50e6  # a Pi 4 core does ~1-2 GMAC/s of small convs
    assert count_params(SERModel(cfg)) < 500_000
    assert macs_per_second(preset("paper"))["whole_window_per_s"] > 5 * macs["whole_window_per_s"]


def test_center_loss_gradient_and_update():
    cl = CenterLoss(3, 4)
    cl.centers.copy_(torch.tensor([[0.0] * 4, [1.0] * 4, [2.0] * 4]))
    emb = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], requires_grad=True)
    y = torch.tensor([0, 2])
    loss = cl(emb, y)
    loss.backward()
    expected = (emb.detach() - cl.centers[y]) / 2  # d/de of 0.5*mean||e - c||^2
    assert torch.allclose(emb.grad, expected)
    before = cl.centers.clone()
    cl.update(emb, y, alpha=0.5)
    # class 0 moves half way to its member / (1 + n): c0 - 0.5*(c0 - e0)/2
    assert torch.allclose(cl.centers[0], before[0] - 0.5 * (before[0] - emb[0].detach()) / 2)
    assert torch.equal(cl.centers[1], before[1])  # no member in the batch: unchanged
