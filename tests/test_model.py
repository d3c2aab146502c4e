"""CMCR-Net, its collaboration module and its losses, on real audio."""

import pytest
import torch

from cmse_speechbrain.cmcr_net import CMCRNet, CollaborationModule
from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.losses import (
    ContrastiveRegularization,
    RandomConvRepresentation,
    StreamContrastiveLoss,
)

SMALL = dict(channels=[4, 8, 8, 16, 16], d_model=16, nhead=2)


@pytest.fixture
def real_pair(mini_voicebank):
    """A real VoiceBank-DEMAND training pair (speaker p287), 2 s each."""
    noisy = read_audio_checked(mini_voicebank / "noisy_trainset_28spk_wav/p287_002.flac")
    clean = read_audio_checked(mini_voicebank / "clean_trainset_28spk_wav/p287_002.flac")
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
    enhanced, aux = model(noisy)
    loss = torch.nn.functional.mse_loss(enhanced, clean)
    loss = loss + StreamContrastiveLoss()(aux["streams"], model.reference_features(clean))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_reference_features_leave_batchnorm_and_mode_alone(real_pair):
    _, clean = real_pair
    model = CMCRNet(**SMALL).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reference = model.reference_features(clean)
    assert model.training and not reference.requires_grad
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_use_cm_switch_removes_the_module():
    full = CMCRNet(**SMALL)
    baseline = CMCRNet(use_cm=False, **SMALL)
    assert isinstance(full.cm, CollaborationModule) and baseline.cm is None
    cm_params = sum(p.numel() for p in full.cm.parameters())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(full) - count(baseline) == cm_params > 0
    enhanced, aux = baseline(torch.zeros(1, 8000))
    assert aux["streams"] == []
    with pytest.raises(RuntimeError, match="CM"):
        baseline.reference_features(torch.zeros(1, 8000))


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


def test_stream_loss_prefers_relevant_stream_near_clean(real_pair):
    _, clean = real_pair
    model = CMCRNet(**SMALL)
    reference = model.reference_features(clean)
    loss = StreamContrastiveLoss(temperature=0.1)
    noise = torch.randn_like(reference)
    right = loss([(reference + 0.1 * noise, noise)], reference)
    swapped = loss([(noise, reference + 0.1 * noise)], reference)
    assert right < swapped
    # padded frames are not used as negatives
    lengths = torch.tensor([0.5])
    half = reference.shape[1] // 2
    padded_noise = noise.clone()
    padded_noise[:, half + 1 :] = reference[:, half + 1 :]
    assert torch.isclose(
        loss([(reference, padded_noise)], reference, lengths),
        loss([(reference, noise)], reference, lengths),
    )
