import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeser.train.losses import CenterLoss
from edgeser.train.config import preset
from edgeser.train.model import SERModel, count_params, macs_per_second, mask_bands_and_time


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
    # edge-small: the same geometry (window, frames) at about two thirds of the compute
    small = preset("edge-small")
    assert (small.window_samples, small.frame_samples) == (cfg.window_samples, cfg.frame_samples)
    assert macs_per_second(small)["whole_window_per_s"] < 0.75 * macs["whole_window_per_s"]
    m = SERModel(small).eval()
    assert count_params(m) < 0.65 * count_params(SERModel(cfg))
    with torch.no_grad():
        logits, emb = m(torch.randn(2, small.window_samples) * 0.1)
    assert logits.shape == (2, small.n_classes) and torch.isfinite(logits).all()


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


def test_speaker_adversary_reverses_the_gradient_into_the_embedding_only():
    from edgeser.train.losses import SpeakerAdversary

    torch.manual_seed(0)
    adv = SpeakerAdversary(4, 3)
    emb = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1])
    torch.nn.functional.cross_entropy(adv.net(emb), y).backward()      # without the reversal
    plain_emb, plain_w = emb.grad.clone(), adv.net[0].weight.grad.clone()
    emb.grad = None
    adv.zero_grad()
    torch.nn.functional.cross_entropy(adv(emb, 0.3), y).backward()
    assert torch.allclose(emb.grad, -0.3 * plain_emb)          # the features learn to hide the speaker
    assert torch.allclose(adv.net[0].weight.grad, plain_w)     # the adversary learns to find them
    r = [SpeakerAdversary.ramp(p) for p in (0.0, 0.1, 0.5, 1.0)]
    assert r[0] == 0.0 and r == sorted(r) and r[-1] > 0.99


@pytest.mark.parametrize("stem", ["conv", "fbank"])
def test_qat_simulates_int8_and_switches_off_exactly(stem):
    from edgeser.train.quantsim import fake_int8, set_qat

    kw = dict(stem="fbank", stem_kernel=400, stem_stride=160, fbank_bands=8) if stem == "fbank" else {}
    torch.manual_seed(0)
    m = SERModel(preset("tiny", **kw)).eval()
    x = torch.randn(3, m.cfg.window_samples) * 0.1
    with torch.no_grad():
        ref, _ = m(x)
        on, _ = set_qat(m, True)(x)
        off, _ = set_qat(m, False)(x)
    assert torch.equal(ref, off)
    assert not torch.equal(ref, on) and (ref - on).abs().max() < 0.5 * ref.abs().max()
    # 256 levels spanning the tensor and zero; the gradient passes straight through
    t = torch.linspace(-1.0, 3.0, 1000, requires_grad=True)
    q = fake_int8(t)
    assert len(torch.unique(q.detach())) <= 256 and (q - t).abs().max() <= 4.0 / 255 / 2 + 1e-6
    q.sum().backward()
    assert torch.equal(t.grad, torch.ones_like(t))
    # over rows, the range is a quantile of the row maxima: a rare peak is clipped, as the
    # calibrated int8 file clips it
    rows = torch.ones(20, 4)
    rows[3, 1] = 50.0
    clipped = fake_int8(rows, quantile=0.9)
    assert clipped.max() < 2.0 and torch.allclose(clipped[0], torch.ones(4), atol=1 / 255)
    assert fake_int8(rows, quantile=1.0).max() > 49.0
    # training with QAT on still back-propagates into every block
    set_qat(m, True).train()
    logits, _ = m(x)
    logits.sum().backward()
    assert all(p.grad is not None for p in m.frontend.blocks[0].parameters())


def test_filterbank_floor_is_part_of_the_config():
    cfg = preset("edge")
    assert cfg.fbank_floor == 1e-4
    m = SERModel(cfg)
    assert m.frontend.stem.floor == 1e-4
    # checkpoints written before the field existed load with the floor they were trained with
    from edgeser.train.model import ModelConfig
    d = cfg.to_dict()
    del d["fbank_floor"]
    assert ModelConfig.from_dict(d).fbank_floor == 1e-6


def test_specaug_masks_whole_bands_and_time_spans_only_while_training():
    torch.manual_seed(0)
    x = torch.randn(6, 5, 16, 10) + 3.0  # (B, T, bands, positions): no zeros of its own
    y = mask_bands_and_time(x, masks=2)
    hit = y == 0
    assert torch.equal(y[~hit], x[~hit])  # what is kept is untouched
    assert hit.any()
    for b in range(x.shape[0]):
        bands = hit[b].all(dim=(0, 2))                             # a band masked over the whole window
        times = hit[b].permute(1, 0, 2).reshape(16, -1).all(0)     # a time position masked in every band
        covered = bands[None, :, None] | times.reshape(5, 1, 10)
        assert torch.equal(hit[b], covered.expand_as(hit[b]))      # nothing else is masked
        assert bands.sum() <= 2 * 2 and times.sum() <= 2 * 5       # at most 2 masks of 12.5% / 10%
    cfg = preset("tiny", stem="fbank", stem_kernel=400, stem_stride=160, fbank_bands=16, labels=("a", "b"))
    m = SERModel(cfg)
    frames = m.frame(torch.randn(2, cfg.window_samples))
    m.eval()
    with torch.no_grad():
        plain, _ = m.frontend(frames)
        m.frontend.specaug = 2
        assert torch.equal(m.frontend(frames)[0], plain)  # evaluation never masks


def test_speed_change_moves_pitch_and_length_together():
    from edgeser.speed import change_speed

    sr, f0 = 16000, 200.0
    x = np.sin(2 * np.pi * f0 * np.arange(sr) / sr).astype(np.float32)
    y = change_speed(x, 1.1)
    assert abs(len(y) - sr / 1.1) < 2 and y.dtype == np.float32
    peak = np.argmax(np.abs(np.fft.rfft(y))) * sr / len(y)
    assert abs(peak - 220.0) < 2.0
    assert change_speed(x, 1.0) is x


@pytest.mark.parametrize("n", [1600, 1601, 1000, 1759])
def test_blocked_stem_and_pooled_shortcut_compute_the_trained_layers(n):
    """filters() and shortcut() rearrange the stem convolution and the pooled 1x1 skip for int8
    kernels; they must give the same numbers as the modules whose weights the checkpoint holds,
    trained or frozen for export."""
    from edgeser.train.model import freeze_derived_weights

    torch.manual_seed(0)
    m = SERModel(preset("edge")).eval()
    stem = m.frontend.stem
    x = torch.randn(3, 1, n)
    ref = stem.conv(x)
    assert torch.allclose(stem.filters(x), ref, atol=1e-5)
    pooled = [b for b in m.frontend.blocks if b.residual and isinstance(b.skip[0], torch.nn.AvgPool1d)]
    assert pooled
    for b in pooled:
        y = torch.randn(2, b.skip[1].in_channels, 5)
        assert torch.allclose(b.shortcut(y), b.skip(y), atol=1e-6)
    freeze_derived_weights(m)
    with torch.no_grad():
        stem.conv.weight.zero_()  # frozen copies no longer read the parameters
    assert torch.allclose(stem.filters(x), ref, atol=1e-5)
    assert set(m.state_dict()) == set(SERModel(preset("edge")).state_dict())


def _infomax_objective(m, audio):
    """Mean window entropy minus entropy of the mean answer: what infomax_adapt lowers."""
    from edgeser.train.data import eval_windows

    W = torch.from_numpy(np.concatenate([eval_windows(x, m.cfg.window_samples) for x in audio]))
    with torch.no_grad():
        p = torch.softmax(m(W)[0], -1)
    mean = p.mean(0)
    return float(-(p * torch.log(p + 1e-8)).sum(1).mean() + (mean * torch.log(mean + 1e-8)).sum())


def test_infomax_adaptation_lowers_its_objective_and_keeps_the_classifier():
    from edgeser.train.engine import adapt_batchnorm, infomax_adapt

    torch.manual_seed(0)
    cfg = preset("tiny", labels=("anger", "neutral", "sadness"))
    rng = np.random.default_rng(0)
    audio = [(0.1 * rng.standard_normal(int(cfg.window_samples * 1.5))).astype(np.float32) for _ in range(6)]
    m = adapt_batchnorm(SERModel(cfg), audio)
    done = infomax_adapt(m, audio, steps=5, lr=1e-2)
    assert _infomax_objective(done, audio) < _infomax_objective(m, audio) - 1e-3
    before, after = m.state_dict(), done.state_dict()
    for k in before:
        same = torch.equal(before[k], after[k])
        if k.startswith("head.classifier.") or "running_" in k or "num_batches" in k:
            assert same, k          # the classifier and the batch-norm statistics stay
        elif k.endswith("weight") and not same:
            break
    else:
        raise AssertionError("no weight moved")
    assert all(not p.requires_grad for p in done.parameters())
    assert torch.equal(infomax_adapt(m, audio, steps=0).state_dict()["head.embed.weight"], before["head.embed.weight"])


def test_balancing_divides_each_class_by_its_mean_answer():
    """The biases drop by the log of the mean answer on the audio (clips weighing their length),
    nothing else moves, and the classes the model then gives that audio are more even than before."""
    from edgeser.train.engine import Adaptation, adapt_batchnorm, balance_classes, predict_probs

    torch.manual_seed(2)
    cfg = preset("tiny", labels=("anger", "neutral", "sadness", "fear"))
    rng = np.random.default_rng(2)
    audio = [(0.1 * rng.standard_normal(int(cfg.window_samples * r))).astype(np.float32) for r in (1, 1.5, 3, 1, 2, 1)]
    m = adapt_batchnorm(SERModel(cfg), audio)
    with torch.no_grad():
        m.head.classifier.bias += torch.tensor([2.0, 0.0, -1.0, 0.5])   # a voice the model hears as angry
    w = np.array([len(x) for x in audio], dtype=np.float64)[:, None]
    before = (w * predict_probs(m, audio)).sum(0) / w.sum()
    done = balance_classes(m, audio)
    after = (w * predict_probs(done, audio)).sum(0) / w.sum()

    def entropy(p):
        return float(-(p * np.log(p)).sum())

    assert entropy(after) > entropy(before) + 0.05 and after.max() < before.max()
    shift = done.state_dict()["head.classifier.bias"] - m.state_dict()["head.classifier.bias"]
    assert torch.allclose(shift, -torch.log(torch.from_numpy(before).float()), atol=1e-5)
    for k, v in m.state_dict().items():
        if k != "head.classifier.bias":
            assert torch.equal(v, done.state_dict()[k]), k
    # the runtime's enrolment at the whole strength divides each window's answer by the same mean: the same answers
    from edgeser.balance import ClassBalance
    from edgeser.train.data import eval_windows

    W = torch.from_numpy(np.concatenate([eval_windows(x, cfg.window_samples) for x in audio]))
    with torch.no_grad():
        plain, shifted = (torch.softmax(net(W)[0], -1).numpy() for net in (m, done))
    runtime = ClassBalance(list(cfg.labels), before.tolist(), len(audio), 1.0, strength=1.0).apply(plain)
    assert np.allclose(runtime, shifted, atol=1e-5)
    # Adaptation: statistics, then the steps, then the balance; described as such in a report
    how = Adaptation(steps=2, balance=True)
    assert how.describe() == ("; then 2 steps of information maximisation (unlabelled fine-tuning), then "
                              "classifier biases balanced on the mean answer on the same clips")
    assert Adaptation().describe() == "" and how.fields() == {"adapt_steps": 2, "balance": True}
    applied = how.apply(SERModel(cfg), audio)
    assert not torch.equal(applied.state_dict()["head.classifier.bias"], SERModel(cfg).state_dict()["head.classifier.bias"])


def test_infomax_gradient_is_the_full_batch_gradient_whatever_the_chunking():
    """The mean answer comes from a pass without gradients when the windows are split into chunks:
    the accumulated gradient must equal autograd's on the whole objective, diversity term included."""
    from edgeser.train.engine import infomax_backward

    torch.manual_seed(1)
    cfg = preset("tiny", labels=("anger", "neutral", "sadness", "fear"))
    m = SERModel(cfg).eval()
    W = torch.randn(5, cfg.window_samples) * 0.1
    p = torch.softmax(m(W)[0], -1)
    mean = p.mean(0)
    objective = -(p * torch.log(p + 1e-8)).sum(1).mean() + (mean * torch.log(mean + 1e-8)).sum()
    names = [k for k, _ in m.named_parameters()]
    want = torch.autograd.grad(objective, list(m.parameters()), allow_unused=True)
    for size in (5, 2):
        m.zero_grad()
        infomax_backward(m, list(W.split(size)))
        for k, w, q in zip(names, want, m.parameters()):
            if w is not None:
                assert torch.allclose(q.grad, w, atol=1e-7, rtol=1e-4), (size, k)
    assert any(w is not None and w.abs().sum() > 0 for k, w in zip(names, want) if "classifier" not in k)
