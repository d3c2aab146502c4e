"""VoiceBank preparation and audio reading on real files, good and bad."""

import json
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf

from cmse_speechbrain.dataio import AudioFileError, read_audio_checked

from conftest import ROOT

sys.path.insert(0, str(ROOT / "recipes" / "VoiceBank"))
from voicebank_prepare import prepare_voicebank  # noqa: E402


@pytest.fixture
def data_copy(mini_voicebank, tmp_path):
    """A writable copy of the shipped subset."""
    copy = tmp_path / "vb"
    shutil.copytree(
        mini_voicebank, copy, ignore=shutil.ignore_patterns("*.py", "*.md", "LICENSE*")
    )
    return copy


def test_manifests_split_speakers_and_resample(data_copy, tmp_path):
    save = tmp_path / "save"
    prepare_voicebank(data_copy, save)
    manifests = {
        s: json.loads((save / f"{s}.json").read_text())
        for s in ["train", "valid", "test"]
    }
    speakers = {s: {e["speaker"] for e in m.values()} for s, m in manifests.items()}
    assert speakers["valid"] == {"p226", "p287"}
    assert not speakers["train"] & speakers["valid"]
    assert speakers["test"] == {"p232", "p257"}
    # p234 is shipped at 48 kHz: its manifest points at a 16 kHz cached copy
    entry = manifests["train"]["p234_001"]
    assert sf.info(entry["noisy_wav"]).samplerate == 16000
    assert str(save) in entry["noisy_wav"]
    assert (
        abs(
            entry["length"]
            - sf.info(data_copy / "noisy_trainset_28spk_wav/p234_001.flac").duration
        )
        < 1e-6
    )
    # the other entries refer to the data folder
    assert manifests["test"]["p232_001"]["clean_wav"].startswith("{data_root}/")


def test_prepare_reruns_when_data_folder_changes(data_copy, tmp_path):
    save = tmp_path / "save"
    prepare_voicebank(data_copy, save)
    other = tmp_path / "other"
    shutil.copytree(data_copy, other)
    for f in (other / "noisy_testset_wav").glob("p257_*"):
        f.unlink()
        (other / "clean_testset_wav" / f.name).unlink()
    prepare_voicebank(other, save)
    test = json.loads((save / "test.json").read_text())
    assert {e["speaker"] for e in test.values()} == {"p232"}


def test_noisy_without_clean_twin_is_named(data_copy, tmp_path):
    (data_copy / "clean_testset_wav" / "p232_010.flac").unlink()
    with pytest.raises(FileNotFoundError, match="p232_010.flac: no clean twin"):
        prepare_voicebank(data_copy, tmp_path / "save")


def test_length_mismatch_is_named(data_copy, tmp_path):
    path = data_copy / "noisy_testset_wav" / "p257_001.flac"
    audio, rate = sf.read(path)
    sf.write(path, audio[:-100], rate)
    with pytest.raises(AudioFileError, match="p257_001.flac.*clean twin"):
        prepare_voicebank(data_copy, tmp_path / "save")


def test_unreadable_file_is_named(data_copy, tmp_path):
    (data_copy / "clean_trainset_28spk_wav" / "p225_003.flac").write_text("not audio")
    with pytest.raises(
        AudioFileError, match="p225_003.flac: not a readable audio file"
    ):
        prepare_voicebank(data_copy, tmp_path / "save")


def test_empty_and_missing_folders_are_named(data_copy, tmp_path):
    for f in (data_copy / "noisy_testset_wav").iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match="noisy_testset_wav: no audio files"):
        prepare_voicebank(data_copy, tmp_path / "save")
    shutil.rmtree(data_copy / "noisy_testset_wav")
    with pytest.raises(
        FileNotFoundError, match="missing VoiceBank-DEMAND folder.*noisy_testset_wav"
    ):
        prepare_voicebank(data_copy, tmp_path / "save")


def test_read_audio_checked_refuses_bad_signals(mini_voicebank, tmp_path):
    real = read_audio_checked(mini_voicebank / "clean_testset_wav/p232_001.flac")
    bad = real.numpy().copy()
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="nan.wav: contains NaN"):
        read_audio_checked(tmp_path / "nan.wav")
    sf.write(tmp_path / "short.wav", real.numpy()[:100], 16000)
    with pytest.raises(AudioFileError, match="short.wav: too short"):
        read_audio_checked(tmp_path / "short.wav", min_samples=512)
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(AudioFileError, match="empty.wav: empty audio"):
        read_audio_checked(tmp_path / "empty.wav")
    # 44.1 kHz stereo int16 is resampled and mixed down
    stereo = np.stack([real.numpy(), real.numpy()], axis=1)
    import torch
    import torchaudio.functional as AF

    resampled = AF.resample(torch.from_numpy(stereo.T.copy()), 16000, 44100).T.numpy()
    sf.write(tmp_path / "st.wav", resampled, 44100, subtype="PCM_16")
    back = read_audio_checked(tmp_path / "st.wav")
    assert abs(back.numel() - real.numel()) <= 2
    n = min(back.numel(), real.numel())
    assert torch.corrcoef(torch.stack([back[:n], real[:n]]))[0, 1] > 0.99
