"""Metrics against known values, on real speech."""

import numpy as np
import pytest
import torch

from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.metrics import composite_scores, dnsmos_scores, pesq_wb, si_sdr, stoi_score
from conftest import MINI_VOICEBANK


@pytest.fixture
def speech():
    return read_audio_checked(MINI_VOICEBANK / "clean_testset_wav/p232_013.flac")


def test_identical_signals_score_best(speech):
    scores = composite_scores(speech.double().numpy(), speech.double().numpy())
    assert scores["pesq"] > 4.5
    assert scores["llr"] == pytest.approx(0.0, abs=1e-9)
    assert scores["wss"] == pytest.approx(0.0, abs=1e-9)
    assert scores["ssnr"] == pytest.approx(35.0)  # the upper clamp
    assert scores["csig"] == 5.0 and scores["covl"] == 5.0
    assert stoi_score(speech, speech) == pytest.approx(1.0, abs=1e-6)
    assert si_sdr(speech.numpy(), speech.numpy()) > 80


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_known_snr(speech, snr_db):
    rng = np.random.default_rng(0)
    clean = speech.double().numpy()
    noise = rng.standard_normal(clean.size)
    noise *= np.sqrt((clean**2).mean() / (noise**2).mean() / 10 ** (snr_db / 10))
    assert si_sdr(clean, clean + noise) == pytest.approx(snr_db, abs=0.2)
    assert si_sdr(clean, 0.3 * (clean + noise)) == pytest.approx(snr_db, abs=0.2)


def test_metrics_order_noisier_lower(speech):
    rng = np.random.default_rng(1)
    clean = speech.double().numpy()
    noise = rng.standard_normal(clean.size) * clean.std()
    light, heavy = clean + 0.05 * noise, clean + 0.5 * noise
    light_scores, heavy_scores = composite_scores(clean, light), composite_scores(clean, heavy)
    for key in ["pesq", "csig", "cbak", "covl", "ssnr"]:
        assert light_scores[key] > heavy_scores[key], key
    assert light_scores["llr"] < heavy_scores["llr"] and light_scores["wss"] < heavy_scores["wss"]


def test_pesq_refusal_gives_nan_not_an_exception():
    silence = torch.zeros(16000)
    assert np.isnan(pesq_wb(silence, silence))


def test_dnsmos_ranks_real_noisy_speech_below_clean():
    pytest.importorskip("speechmos")
    clean = read_audio_checked(MINI_VOICEBANK / "clean_testset_wav/p257_006.flac")
    noisy = read_audio_checked(MINI_VOICEBANK / "noisy_testset_wav/p257_006.flac")
    clean_scores, noisy_scores = dnsmos_scores(clean), dnsmos_scores(noisy)
    assert set(clean_scores) == {"sig", "bak", "ovrl"}
    assert clean_scores["bak"] > noisy_scores["bak"]
    assert clean_scores["ovrl"] > noisy_scores["ovrl"]
