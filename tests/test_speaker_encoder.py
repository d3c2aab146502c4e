"""The pretrained speaker encoder (Resemblyzer's weights) as a CR space.

Tests that need the weights skip unless ``pip install resemblyzer`` put
``resemblyzer/pretrained.pt`` on this machine; the real-audio test also
needs ../shared/data.
"""

import pathlib
import pickle

import pytest
import soundfile as sf
import torch

from cmse_speechbrain.speaker_encoder import (
    SpeakerEncoderRepresentation,
    default_weights_path,
)

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


class Payload:
    """An arbitrary object: weights_only loading must refuse it."""


@pytest.fixture(scope="module")
def pretrained():
    try:
        default_weights_path()
    except FileNotFoundError:
        pytest.skip("resemblyzer's weights are not installed (pip install resemblyzer)")
    return SpeakerEncoderRepresentation()


def unit_rms(x):
    return x / x.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-8)


def test_random_network_shapes_without_resemblyzer():
    rep = SpeakerEncoderRepresentation(weights=None, projection=False)
    feats = rep(torch.randn(3, 12345))
    assert [tuple(f.shape) for f in feats] == [(3, 78, 256)] * 3
    windowed = SpeakerEncoderRepresentation(weights=None, window_frames=32)
    assert [tuple(f.shape) for f in windowed(torch.randn(2, 12345))] == [
        (2, 78, 256)
    ] * 4


def test_missing_package_is_reported(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install resemblyzer"):
        default_weights_path()


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "pretrained.pt"
    torch.save(
        {"model_state": {"linear.bias": torch.zeros(256)}, "extra": Payload()}, path
    )
    with pytest.raises(ValueError, match="pretrained.pt"):
        SpeakerEncoderRepresentation(weights=path)
    with open(tmp_path / "plain.pt", "wb") as f:  # a plain pickle, not a torch zip
        pickle.dump(Payload(), f, protocol=2)
    with pytest.raises(ValueError, match="plain.pt"):
        SpeakerEncoderRepresentation(weights=tmp_path / "plain.pt")


def test_foreign_state_dict_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"linear.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ValueError, match="not a Resemblyzer"):
        SpeakerEncoderRepresentation(weights=path)


def test_pretrained_shapes_frozen_and_differentiable(pretrained):
    assert sum(p.numel() for p in pretrained.parameters()) > 1_000_000
    assert not any(p.requires_grad for p in pretrained.parameters())
    pretrained.train()
    assert not pretrained.training and not any(m.training for m in pretrained.modules())
    wavs = torch.randn(2, 16000, requires_grad=True)
    feats = pretrained(wavs)
    assert [tuple(f.shape) for f in feats] == [(2, 101, 256)] * 4
    sum(f.abs().mean() for f in feats).backward()
    assert torch.isfinite(wavs.grad).all() and wavs.grad.abs().sum() > 0


def _real_mixtures(n=3, seconds=3.0, snr_db=5.0):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not on this machine")
    samples = int(seconds * 16000)
    speech = sorted((SHARED / "librispeech_train_clean_100").glob("*.flac"))
    speech = [f for f in speech if sf.info(f).frames >= samples + 16000][:n]
    noises = [
        sorted((SHARED / "noise_extra" / kind).glob("*.flac"))[0]
        for kind in ("cafe_babble", "street_traffic", "kitchen_household")[:n]
    ]
    clean, noisy = [], []
    for s, z in zip(speech, noises):
        c = torch.from_numpy(sf.read(s, dtype="float32")[0])[16000 : 16000 + samples]
        w = torch.from_numpy(sf.read(z, dtype="float32", always_2d=True)[0].mean(1))
        w = w.repeat(samples // len(w) + 1)[:samples]
        w = w * c.norm() / w.norm() * 10 ** (-snr_db / 20)
        clean.append(c)
        noisy.append(c + w)
    return torch.stack(clean), torch.stack(noisy)


def test_distances_on_real_speech_and_noise(pretrained):
    clean, noisy = _real_mixtures()
    halfway = 0.5 * (clean + noisy)
    with torch.no_grad():
        g_clean, g_noisy, g_half, g_scaled = (
            pretrained(unit_rms(x)) for x in (clean, noisy, halfway, 0.5 * clean)
        )
    for c, n, h, s in zip(g_clean, g_noisy, g_half, g_scaled):
        d_noisy = (c - n).abs().mean(dim=(1, 2))  # per utterance
        d_half = (c - h).abs().mean(dim=(1, 2))
        assert (d_half < d_noisy).all()
        assert (c - s).abs().max() < 1e-4 * c.abs().max()  # level-free after unit RMS


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_backward_on_cuda():
    rep = SpeakerEncoderRepresentation(weights=None).cuda()
    wavs = torch.randn(2, 16000, device="cuda", requires_grad=True)
    sum(f.abs().mean() for f in rep(wavs)).backward()
    assert wavs.grad.abs().sum() > 0
    assert not any(m.training for m in rep.modules())
