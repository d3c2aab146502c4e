"""CMCR-Net, its collaboration module and its losses, on real audio."""

import pytest
import torch

from cmse_speechbrain.cmcr_net import CMCRNet, CollaborationModule
from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.losses import (
    CMCRObjective,
    ContrastiveRegularization,
    RandomConvRepresentation,
    ReconstructionLoss,
    StreamContrastiveLoss,
    utterance_rms,
)

from conftest import REAL_MIXTURES
from conftest import real_mixture as _real_mixture

SMALL = dict(channels=[4, 8, 8, 16, 16], d_model=16, nhead=2)


@pytest.fixture
def real_pair(mini_voicebank):
    """A real VoiceBank-DEMAND training pair (speaker p287), 2 s each."""
    noisy = read_audio_checked(
        mini_voicebank / "noisy_trainset_28spk_wav/p287_002.flac"
    )
    clean = read_audio_checked(
        mini_voicebank / "clean_trainset_28spk_wav/p287_002.flac"
    )
    return noisy[None, :32000], clean[None, :32000]


def test_shapes_and_length_preserved(real_pair):
    noisy, _ = real_pair
    model = CMCRNet(**SMALL)
    for length in [noisy.shape[1], 16001, 12345]:
        enhanced, aux = model(noisy[:, :length])
        assert enhanced.shape == (1, length)
        assert len(aux["streams"]) == 3
        frames = aux["spectrum"].shape[1]
        assert aux["streams"][0][0].shape == (1, frames, 16)


def test_gradients_reach_every_parameter(real_pair):
    noisy, clean = real_pair
    model = CMCRNet(**SMALL)
    rep = RandomConvRepresentation(channels=[4, 8])
    stream_loss = StreamContrastiveLoss(rep, stream_size=16)
    enhanced, aux = model(noisy)
    loss = torch.nn.functional.mse_loss(enhanced, clean)
    loss = loss + stream_loss(aux["streams"], clean, noisy - clean)
    loss.backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []


def test_output_follows_the_input_gain(real_pair):
    noisy, _ = real_pair
    model = CMCRNet(**SMALL).eval()
    with torch.no_grad():
        reference, _ = model(noisy)
        for gain in [0.1, 0.5, 2.0, 4.0]:
            scaled, _ = model(gain * noisy)
            assert torch.allclose(scaled, gain * reference, atol=1e-4 * gain), gain


def test_use_cm_switch_removes_the_module():
    full = CMCRNet(**SMALL)
    baseline = CMCRNet(use_cm=False, **SMALL)
    assert isinstance(full.cm, CollaborationModule) and baseline.cm is None
    cm_params = sum(p.numel() for p in full.cm.parameters())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(full) - count(baseline) == cm_params > 0
    enhanced, aux = baseline(torch.zeros(1, 8000))
    assert aux["streams"] == []


def test_self_attention_control_replaces_the_cm(real_pair):
    """The ablation control: in the CM's place, trained by every parameter,
    level-invariant, refused where it makes no sense (with a CM, streaming)."""
    from cmse_speechbrain.cmcr_net import matched_control_width
    from cmse_speechbrain.streaming import StreamingEnhancer

    noisy, clean = real_pair
    full = CMCRNet(**SMALL)
    width = matched_control_width(full.cm.input_proj.in_features, 16, nhead=2)
    control = CMCRNet(use_cm=False, control_width=width, **SMALL)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert control.cm is None and abs(count(control) - count(full)) / count(full) < 0.05
    enhanced, aux = control(noisy)
    assert aux["streams"] == [] and control.control.features.shape[-1] == width
    torch.nn.functional.mse_loss(enhanced, clean).backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in control.parameters()
    )
    control.eval()
    with torch.no_grad():
        assert torch.allclose(control(3 * noisy)[0], 3 * control(noisy)[0], atol=3e-4)
    with pytest.raises(ValueError, match="use_cm=False"):
        CMCRNet(control_width=width, **SMALL)
    causal = CMCRNet(
        use_cm=False, control_width=width, causal=True, time_kernel=2, **SMALL
    )
    with pytest.raises(ValueError, match="not streamable"):
        StreamingEnhancer(causal)


def test_causal_model_ignores_the_future(real_pair):
    noisy, _ = real_pair
    model = CMCRNet(causal=True, **SMALL).eval()
    with torch.no_grad():
        whole, _ = model(noisy)
        changed = noisy.clone()
        changed[:, 24000:] = 0.0
        cut, _ = model(changed)
    # Frames wholly before the change (minus the STFT window) must agree.
    assert torch.allclose(whole[:, :23000], cut[:, :23000], atol=1e-5)
    assert not torch.allclose(whole[:, 24000:], cut[:, 24000:], atol=1e-3)


def test_cr_prefers_clean_output_on_real_audio(real_pair):
    noisy, clean = real_pair
    cr = ContrastiveRegularization(RandomConvRepresentation())
    at_clean = cr(clean, clean, noisy)
    halfway = cr(0.5 * (clean + noisy), clean, noisy)
    at_noisy = cr(noisy, clean, noisy)
    assert at_clean < halfway < at_noisy
    assert at_clean < 1e-3


@pytest.mark.parametrize("speech_file,noise_file,snr", REAL_MIXTURES)
def test_cr_rewards_the_clean_speech_not_a_shortcut(speech_file, noise_file, snr):
    """What CR rewards: clean < quarter < halfway < noisy; a scaled copy of
    the input scores as the input; silence and the noise alone score worse
    than the halfway mixture."""
    clean, noisy = _real_mixture(speech_file, noise_file, snr)
    cr = ContrastiveRegularization(RandomConvRepresentation())
    score = {
        "clean": cr(clean, clean, noisy),
        "quarter": cr(0.75 * clean + 0.25 * noisy, clean, noisy),
        "halfway": cr(0.5 * (clean + noisy), clean, noisy),
        "noisy": cr(noisy, clean, noisy),
        "half_noisy": cr(0.5 * noisy, clean, noisy),
        "silence": cr(1e-4 * torch.randn_like(noisy), clean, noisy),
        "noise_only": cr(noisy - clean, clean, noisy),
    }
    assert score["clean"] < score["quarter"] < score["halfway"] < score["noisy"]
    assert torch.isclose(score["half_noisy"], score["noisy"], atol=1e-4)
    assert score["silence"] > score["halfway"]
    assert score["noise_only"] > score["halfway"]
    # per utterance: a batch of this mixture and another one is the mean of both
    other_clean, other_noisy = _real_mixture(*REAL_MIXTURES[0][:2], 5)
    both = cr.per_utterance(
        torch.cat([noisy, other_clean]),
        torch.cat([clean, other_clean]),
        torch.cat([noisy, other_noisy]),
    )
    assert torch.allclose(
        both, torch.stack([score["noisy"], torch.tensor(0.0)]), atol=1e-4
    )


@pytest.mark.parametrize("speech_file,noise_file,snr", REAL_MIXTURES)
def test_reconstruction_rewards_the_clean_speech_at_any_level(
    speech_file, noise_file, snr
):
    clean, noisy = _real_mixture(speech_file, noise_file, snr)
    loss = ReconstructionLoss()

    def score(output, gain=1.0):
        return loss(gain * output, gain * clean, scale=utterance_rms(gain * noisy))

    assert score(clean) == 0
    assert (
        score(clean)
        < score(0.75 * clean + 0.25 * noisy)
        < score(0.5 * (clean + noisy))
        < score(noisy)
    )
    assert score(2 * clean) > 0 and score(0.5 * clean) > 0  # a wrong gain costs
    for gain in [0.1, 4.0]:  # the loss does not depend on the recording level
        assert torch.isclose(score(noisy, gain), score(noisy), rtol=1e-4)


def test_cr_gradient_flows_through_enhanced_only(real_pair):
    noisy, clean = real_pair
    cr = ContrastiveRegularization(RandomConvRepresentation())
    enhanced = noisy.clone().requires_grad_(True)
    clean = clean.clone().requires_grad_(True)
    cr(enhanced, clean, noisy).backward()
    assert enhanced.grad.abs().sum() > 0
    assert clean.grad is None
    assert not any(p.requires_grad for p in cr.parameters())


def test_cr_representation_is_fixed_across_global_seeds():
    torch.manual_seed(1)
    a = RandomConvRepresentation(channels=[4, 8])
    torch.manual_seed(2)
    b = RandomConvRepresentation(channels=[4, 8])
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def _fitted_stream_loss(loss, relevant, irrelevant, clean, noise, steps=300):
    """The CM loss after fitting its read-out to the given streams."""
    optimizer = torch.optim.Adam(loss.readout.parameters(), lr=1e-2)
    for _ in range(steps):
        value = loss([(relevant, irrelevant)], clean, noise)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    with torch.no_grad():
        return float(loss([(relevant, irrelevant)], clean, noise))


def test_stream_loss_is_not_solved_by_a_fixed_channel_split():
    """Streams that follow the speech and the noise fit the CM loss; a fixed
    split of the mixture's channels (the earlier loss's shortcut) does not."""
    torch.manual_seed(0)
    clean, noisy = _real_mixture(*REAL_MIXTURES[0][:2], 0)
    clean2, noisy2 = _real_mixture(*REAL_MIXTURES[1][:2], 5)
    clean, noisy = torch.cat([clean, clean2]), torch.cat([noisy, noisy2])
    noise = noisy - clean
    rep = RandomConvRepresentation(channels=[8, 16, 16])
    size = 128
    loss = StreamContrastiveLoss(rep, stream_size=size)
    # streams as a projection of features: of the speech and noise (a real
    # split), or of the mixture gated by a fixed channel mask (the shortcut)
    projection = torch.randn(loss.target_size, size) / loss.target_size**0.5
    speech_feats, noise_feats = loss.targets(clean, noise)
    mixture_feats, _ = loss.targets(noisy, torch.zeros_like(noisy))
    mask = (torch.arange(size) < size // 2).float()
    split = _fitted_stream_loss(
        StreamContrastiveLoss(rep, size),
        speech_feats @ projection,
        noise_feats @ projection,
        clean,
        noise,
    )
    shortcut = _fitted_stream_loss(
        StreamContrastiveLoss(rep, size),
        (mixture_feats @ projection) * mask,
        (mixture_feats @ projection) * (1 - mask),
        clean,
        noise,
    )
    # measured: 0.95 vs 1.23 (the old loss fell to 0.02 on the shortcut)
    assert split < 0.85 * shortcut, (split, shortcut)


def test_objective_controls_the_gradient_shares(real_pair):
    noisy, clean = real_pair
    rep = RandomConvRepresentation(channels=[4, 8])
    objective = CMCRObjective(
        ReconstructionLoss(),
        ContrastiveRegularization(rep, [0.5, 1.0]),
        StreamContrastiveLoss(rep, stream_size=16),
        cm_share=0.2,
        cr_share=0.05,
        aux_start_steps=2,
        aux_ramp_steps=1,
        rebalance_interval=1,
        rebalance_momentum=0.0,
    )
    model = CMCRNet(**SMALL)
    parameters = list(model.parameters())

    def grad_norm(value):
        grads = torch.autograd.grad(
            value, parameters, retain_graph=True, allow_unused=True
        )
        return torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None))

    for step in range(4):
        enhanced, aux = model(noisy)
        loss, terms = objective(enhanced, clean, noisy, None, aux["streams"])
        objective.rebalance(terms, parameters)
        if step < 2:  # warm-up: the auxiliary terms are off
            assert torch.isclose(loss, terms["recon"])
    # the loss's auxiliary parts now have their stated share of the gradient
    recon = grad_norm(terms["recon"])
    cm = grad_norm(objective.weights[0] * terms["cm"])
    cr = grad_norm(objective.weights[1] * terms["cr"])
    assert torch.isclose(cm / recon, torch.tensor(0.2), rtol=0.05)
    assert torch.isclose(cr / recon, torch.tensor(0.05), rtol=0.05)
    assert sorted(terms) == ["cm", "complex", "cr", "magnitude", "recon", "waveform"]


def test_curricular_cr_pushes_from_the_baseline_output_too():
    """Curricular CR on a real mixture, with a real enhanced output (the
    shipped model's) standing in for the model trained without CR: at weight
    0 it is plain CR; with weight, staying at that output costs more; up to
    the default final weight the order clean < that output < halfway back
    to the noisy input < noisy holds, and a scaled copy scores as the
    original."""
    from cmse_speechbrain.inference import frozen_network, shipped_model_folder
    from cmse_speechbrain.losses import CurricularNegative

    clean, noisy = _real_mixture(*REAL_MIXTURES[0][:2], 5)
    baseline = CurricularNegative(
        "noisy+baseline", frozen_network(shipped_model_folder())
    )
    hard = baseline(noisy)
    assert hard.shape == noisy.shape and not hard.requires_grad
    cr = ContrastiveRegularization(RandomConvRepresentation())

    def score(output, alpha):
        return float(cr(output, clean, noisy, hard_negative=hard, hard_weight=alpha))

    assert score(hard, 0.0) == pytest.approx(float(cr(hard, clean, noisy)))
    assert score(hard, 0.25) > score(hard, 0.0)
    back_toward_noisy = 0.5 * (hard + noisy)
    for alpha in (0.0, 0.125, 0.25):  # up to the default final weight
        assert score(clean, alpha) < 1e-3
        assert (
            score(clean, alpha)
            < score(hard, alpha)
            < score(back_toward_noisy, alpha)
            < score(noisy, alpha)
        )
        assert score(0.5 * hard, alpha) == pytest.approx(score(hard, alpha), abs=1e-4)
    # why the weight stays low: with the hard negative alone, the noisy input
    # scores better than the baseline's output
    assert score(noisy, 1.0) < score(hard, 1.0)


def test_objective_follows_the_curriculum(real_pair):
    from cmse_speechbrain.losses import CurricularNegative

    noisy, clean = real_pair
    rep = RandomConvRepresentation(channels=[4, 8])
    hard = CurricularNegative(
        "noisy+baseline",
        lambda x: 0.7 * x + 0.3 * clean,
        start_steps=2,
        ramp_steps=2,
        final_weight=1.0,
    )
    plain = CMCRObjective(
        ReconstructionLoss(),
        ContrastiveRegularization(rep, [0.5, 1.0]),
        aux_start_steps=0,
        aux_ramp_steps=0,
    )
    curricular = CMCRObjective(
        ReconstructionLoss(),
        ContrastiveRegularization(rep, [0.5, 1.0]),
        aux_start_steps=0,
        aux_ramp_steps=0,
        curricular_negative=hard,
    )
    enhanced = 0.5 * (noisy + clean)
    crs = []
    for _ in range(5):
        crs.append(
            (
                float(plain(enhanced, clean, noisy)[1]["cr"]),
                float(curricular(enhanced, clean, noisy)[1]["cr"]),
            )
        )
    assert crs[0][0] == pytest.approx(crs[0][1]) and crs[2][0] == pytest.approx(
        crs[2][1]
    )
    assert crs[4][1] != pytest.approx(crs[4][0])  # weight 1 after the ramp
    with pytest.raises(ValueError, match="cr_baseline_folder"):
        CurricularNegative("noisy+baseline", None)
    with pytest.raises(ValueError, match="cr_negatives"):
        CurricularNegative("baseline")
