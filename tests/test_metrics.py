"""Metrics against known values, on real speech."""

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.metrics import (
    composite_scores,
    dnsmos_scores,
    nanmean,
    pause_attenuation,
    pesq_wb,
    si_sdr,
    stoi_score,
)

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
    light_scores, heavy_scores = (
        composite_scores(clean, light),
        composite_scores(clean, heavy),
    )
    for key in ["pesq", "csig", "cbak", "covl", "ssnr"]:
        assert light_scores[key] > heavy_scores[key], key
    assert (
        light_scores["llr"] < heavy_scores["llr"]
        and light_scores["wss"] < heavy_scores["wss"]
    )


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


# --- residual noise: pause attenuation and speech level (issue 28) ---------


def _pair(name):
    clean = (
        read_audio_checked(MINI_VOICEBANK / f"clean_testset_wav/{name}.flac")
        .double()
        .numpy()
    )
    noisy = (
        read_audio_checked(MINI_VOICEBANK / f"noisy_testset_wav/{name}.flac")
        .double()
        .numpy()
    )
    return noisy, clean


# real pairs with speech pauses
@pytest.mark.parametrize("name", ["p232_010", "p257_058"])
def test_pause_attenuation_rewards_removing_the_noise_not_the_speech(name):
    noisy, clean = _pair(name)

    def scores(enhanced):
        result = pause_attenuation(enhanced, noisy, clean)
        return result["pause_attenuation_db"], result["speech_level_db"]

    perfect, perfect_level = scores(clean)
    assert perfect > 20 and perfect_level == pytest.approx(0.0, abs=1e-9)
    assert scores(noisy)[0] == pytest.approx(0.0, abs=1e-9)  # nothing removed
    halfway = scores(0.5 * (clean + noisy))[0]  # half of the noise left (-6 dB)
    assert 5.0 < halfway < 7.0 and halfway < perfect
    # a copy turned down by 6 dB "attenuates" the pauses, and the speech with them
    quieter, quieter_level = scores(0.5 * noisy)
    noisy_level = scores(noisy)[1]
    assert quieter == pytest.approx(20 * np.log10(2), abs=1e-6)
    assert quieter_level == pytest.approx(noisy_level - 20 * np.log10(2), abs=1e-6)
    assert quieter_level == pytest.approx(-6.0, abs=2.0)
    # all noise gone, all speech too
    silence, silence_level = scores(np.zeros_like(noisy))
    assert silence > 100 and silence_level < -100
    # torch tensors as the Brain passes them give the same numbers
    assert pause_attenuation(
        torch.from_numpy(0.5 * noisy), torch.from_numpy(noisy), torch.from_numpy(clean)
    )["pause_attenuation_db"] == pytest.approx(quieter)


def test_no_pause_gives_nan_left_out_of_the_mean():
    # speech to the edges: no frame 40 dB below the loudest
    noisy, clean = _pair("p232_032")
    without = pause_attenuation(0.5 * noisy, noisy, clean)
    assert np.isnan(without["pause_attenuation_db"])
    assert np.isfinite(without["speech_level_db"])  # the speech is still measured
    with_pauses = pause_attenuation(0.5 * _pair("p232_010")[0], *_pair("p232_010"))
    values = [without["pause_attenuation_db"], with_pauses["pause_attenuation_db"]]
    assert nanmean(values) == pytest.approx(20 * np.log10(2))
    assert np.isnan(nanmean(values[:1]))


def test_cmse_evaluate_with_noisy_adds_the_residual_noise_columns(tmp_path, capsys):
    from cmse_speechbrain import cli

    for folder in ("enhanced", "noisy", "clean"):
        (tmp_path / folder).mkdir()
    for name in ["p232_010", "p232_032"]:
        noisy, clean = _pair(name)
        for folder, audio in [
            ("enhanced", 0.5 * noisy),
            ("noisy", noisy),
            ("clean", clean),
        ]:
            sf.write(tmp_path / folder / f"{name}.wav", audio, 16000, subtype="FLOAT")
    code = cli.evaluate_main(
        [
            "--enhanced",
            str(tmp_path / "enhanced"),
            "--clean",
            str(tmp_path / "clean"),
            "--noisy",
            str(tmp_path / "noisy"),
            "-o",
            str(tmp_path / "s.csv"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "PAUSE_dB" in out and "SPEECH_dB" in out
    with open(tmp_path / "s.csv", encoding="utf-8") as f:
        rows = {row["id"]: row for row in csv.DictReader(f)}
    row = rows["p232_010"]
    assert float(row["enhanced_pause_attenuation_db"]) == pytest.approx(6.02, abs=1e-3)
    assert float(row["noisy_pause_attenuation_db"]) == 0.0
    assert float(row["enhanced_speech_level_db"]) == pytest.approx(
        float(row["noisy_speech_level_db"]) - 6.02, abs=2e-3
    )
    # no pause in this file
    assert rows["p232_032"]["enhanced_pause_attenuation_db"] == "nan"
    # without --noisy: no residual-noise columns (they need the noisy input)
    cli.evaluate_main(
        [
            "--enhanced",
            str(tmp_path / "enhanced"),
            "--clean",
            str(tmp_path / "clean"),
            "-o",
            str(tmp_path / "t.csv"),
        ]
    )
    assert "pause" not in (tmp_path / "t.csv").read_text().splitlines()[0]
