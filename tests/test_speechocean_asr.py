"""The speechocean762 ASR recipe on the shipped subset (real speech, real
noise): multi-condition training, one WER report per test condition, the
exported pipeline."""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from cmse_speechbrain.asr import EnhancedASR

from conftest import ROOT

MINI = ROOT / "recipes" / "SpeechOcean762" / "mini_speechocean"
SCRIPT = ROOT / "recipes" / "SpeechOcean762" / "ASR" / "train.py"
HPARAMS = ROOT / "hparams" / "asr_speechocean.yaml"
SMALL = [
    "--cnn_blocks=1",
    "--cnn_channels=[4]",
    "--rnn_layers=1",
    "--rnn_neurons=16",
    "--dnn_neurons=16",
    "--device=cpu",
]


def noise_folder(folder):
    """A real-audio folder whose one noise type has 7 real recordings:
    RealMix puts n2 in validation, n5 in test, the others in training."""
    (folder / "noise_extra" / "hum").mkdir(parents=True)
    noisy = sorted(
        (ROOT / "recipes/VoiceBank/mini_voicebank/noisy_testset_wav").glob("*.flac")
    )
    for index, path in enumerate(noisy[:7]):
        shutil.copy(path, folder / "noise_extra" / "hum" / f"n{index}.flac")
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "recipes" / "SpeechOcean762"))
    from speechocean_prepare import prepare_asr_test_set

    tmp = tmp_path_factory.mktemp("so_asr")
    data = noise_folder(tmp / "data")
    prepare_asr_test_set(
        MINI, data, tmp / "asr_test", snrs=(5.0,), utterances_per_speaker=2
    )
    out = tmp / "run"
    command = [
        sys.executable,
        str(SCRIPT),
        str(HPARAMS),
        f"--output_folder={out}",
        *SMALL,
        f"--noise_folder={data}",
        "--multi_condition=True",
        f"--asr_test_folder={tmp / 'asr_test'}",
        "--test_conditions=[clean,5dB]",
        "--number_of_epochs=1",
    ]
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if result.returncode != 0:
        pytest.fail(f"recipe failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return out


def test_manifests_keep_the_roles(run):
    train = json.loads((run / "train.json").read_text())
    valid = json.loads((run / "valid.json").read_text())
    test = json.loads((run / "test_clean.json").read_text())
    noisy = json.loads((run / "test_5dB.json").read_text())
    assert {e["spk_id"] for e in train.values()} == {"0001", "0005", "0006"}
    assert {e["spk_id"] for e in valid.values()} == {
        "0024",
        "0049",
    }  # RealMix's validation group
    assert {e["spk_id"] for e in test.values()} == {
        "0003",
        "0044",
    }  # untouched test speakers
    assert set(noisy) == set(test)
    assert test["000030012"]["words"] == "MARK IS GOING TO SEE ELEPHANT"
    with open(run / "noise_train.csv", newline="") as fin:
        noises = {row["ID"] for row in csv.DictReader(fin)}
    assert noises == {"n0", "n1", "n3", "n4", "n6"}  # not the validation or test noise


def test_one_report_per_condition_and_a_pipeline(run):
    log = (run / "train_log.txt").read_text()
    assert "test set: test_clean" in log and "test set: test_5dB" in log
    for name in ["wer_test_clean.txt", "wer_test_5dB.txt"]:
        assert "%WER" in (run / name).read_text()
    pipeline = EnhancedASR.from_folder(run / "pipeline")
    assert isinstance(
        pipeline.transcribe_file(MINI / "WAVE/SPEAKER0003/000030012.WAV"), str
    )


def test_noisy_condition_without_its_set_is_refused(tmp_path):
    sys.path.insert(0, str(ROOT / "recipes" / "SpeechOcean762"))
    from speechocean_prepare import prepare_speechocean_asr

    with pytest.raises(ValueError, match="needs asr_test_folder"):
        prepare_speechocean_asr(MINI, tmp_path, test_conditions=["clean", "0dB"])
    with pytest.raises(FileNotFoundError, match="asr_test.json: missing"):
        prepare_speechocean_asr(
            MINI, tmp_path, test_conditions=["0dB"], asr_test_folder=tmp_path
        )
