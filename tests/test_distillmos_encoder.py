"""Distill-MOS's encoder as a CR space (cr_space: distillmos).

Tests that need the weights skip unless ``pip install distillmos`` (in the
``test`` extra, so CI runs them) put ``distillmos/weights/distill_mos_v7.pt``
on this machine. Audio: the shipped real subsets (VoiceBank-DEMAND speech,
DNS noise).
"""

import pathlib
import pickle

import pytest
import torch

from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.distillmos_encoder import (
    DistillMOSRepresentation,
    default_weights_path,
)
from cmse_speechbrain.losses import ContrastiveRegularization, cr_space_representation

from conftest import REAL_MIXTURES, real_mixture

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPEECH = ROOT / "recipes/VoiceBank/mini_voicebank/clean_trainset_28spk_wav"
WEIGHTS = [1.0, 0.5, 0.25, 0.125]


class Payload:
    """An arbitrary object: weights_only loading must refuse it."""


@pytest.fixture(scope="module")
def pretrained():
    try:
        default_weights_path()
    except FileNotFoundError:
        pytest.skip("Distill-MOS's weights are not installed (pip install distillmos)")
    return DistillMOSRepresentation()


def test_shapes_windows_and_padding_without_the_weights():
    rep = DistillMOSRepresentation(weights=None, layer_groups=[[0], [1], [7]])
    # 9 s: 450 frames, two transformer windows of 384
    feats = rep(torch.randn(2, 9 * 16000))
    assert [tuple(f.shape) for f in feats] == [
        (2, 450, 1024),
        (2, 450, 200),
        (2, 450, 200),
    ]
    assert all(torch.isfinite(f).all() for f in feats)
    # with lengths, what fills the padding barely reaches the valid frames
    # (only through the convolutions' context at the edge); without, it does
    short = 0.1 * torch.randn(1, 3 * 16000)
    quiet = torch.nn.functional.pad(short, (0, 16000))
    loud = torch.cat([short, torch.randn(1, 16000)], dim=1)
    lengths = torch.tensor([0.75])
    with torch.no_grad():
        masked = [
            (a - b).abs()[:, :145].mean()
            for a, b in zip(rep(quiet, lengths), rep(loud, lengths))
        ]
        unmasked = [
            (a - b).abs()[:, :145].mean() for a, b in zip(rep(quiet), rep(loud))
        ]
    assert masked[0] == 0  # the front end: local, and the peak is the valid part's
    for m, u in zip(masked[1:], unmasked[1:]):
        assert m < 0.1 * u


def test_bad_layer_groups_are_refused():
    with pytest.raises(ValueError, match="layers are 0"):
        DistillMOSRepresentation(weights=None, layer_groups=[[8]])
    with pytest.raises(ValueError, match="cannot be summed"):
        DistillMOSRepresentation(weights=None, layer_groups=[[0, 1]])


def test_missing_package_is_reported(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install distillmos"):
        default_weights_path()


def test_pickled_object_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"model": {"cnn.cnn.0.bias": torch.zeros(64)}, "extra": Payload()}, path)
    with pytest.raises(ValueError, match="weights.pt"):
        DistillMOSRepresentation(weights=path)
    with open(tmp_path / "plain.pt", "wb") as f:  # a plain pickle, not a torch zip
        pickle.dump(Payload(), f, protocol=2)
    with pytest.raises(ValueError, match="plain.pt"):
        DistillMOSRepresentation(weights=tmp_path / "plain.pt")
    torch.save({"model": {"linear.weight": torch.zeros(3, 3)}}, tmp_path / "other.pt")
    with pytest.raises(
        ValueError, match="not a Distill-MOS weight file: no 'cnn.cnn.0.weight'"
    ):
        DistillMOSRepresentation(weights=tmp_path / "other.pt")


def test_matches_distillmos_own_network(pretrained):
    """The rebuilt layers compute what the distillmos package computes, on
    one 7.68 s segment of real speech (its own input length)."""
    distillmos = pytest.importorskip("distillmos")
    reference = distillmos.ConvTransformerSQAModel(load_weights=True).eval()
    speech = torch.cat(
        [read_audio_checked(f) for f in sorted(SPEECH.glob("*.flac"))[:4]]
    )
    x = speech[None, :122880]
    assert x.shape[1] == 122880
    captured = {}

    def keep(name):
        def hook(module, inputs, output):
            captured[name] = inputs[0]

        return hook

    head = reference.transformer_pool_attn
    head.norm_trans.register_forward_hook(keep("last"))
    head.transformer.linear_proj.register_forward_hook(keep("front"))
    with torch.no_grad():
        reference(x)
        ours = DistillMOSRepresentation(layer_groups=[[0], [7]])
        ours.load_distillmos_weights(default_weights_path())
        front, last = ours(x)
    # equal but in silent bins (magnitude floor 1e-6 here, a 1e-12 clip there)
    for ours_level, theirs in (
        (front, captured["front"]),
        (last, captured["last"].transpose(1, 2)),
    ):
        assert ours_level.shape == theirs.shape
        assert (ours_level - theirs).abs().max() < 1e-2
        assert (ours_level - theirs).abs().mean() < 1e-4


def test_frozen_and_differentiable(pretrained):
    assert sum(p.numel() for p in pretrained.parameters()) > 1_000_000
    assert not any(p.requires_grad for p in pretrained.parameters())
    pretrained.train()
    assert not any(m.training for m in pretrained.modules())
    wavs = torch.randn(2, 16000, requires_grad=True)
    sum(f.abs().mean() for f in pretrained(wavs)).backward()
    assert torch.isfinite(wavs.grad).all() and wavs.grad.abs().sum() > 0
    assert (
        cr_space_representation("distillmos", None).layer_groups
        == pretrained.layer_groups
    )


@pytest.mark.parametrize("speech,noise,snr", REAL_MIXTURES)
def test_cr_in_this_space_rewards_the_clean_speech(pretrained, speech, noise, snr):
    """What CR rewards here: clean < quarter < halfway < noisy; a scaled
    copy of the input scores as the input; silence and the noise alone
    score worse than the halfway mixture."""
    clean, noisy = real_mixture(speech, noise, snr)
    cr = ContrastiveRegularization(pretrained, WEIGHTS)
    with torch.no_grad():
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
