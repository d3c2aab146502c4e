"""EnhanceCMCR, export and the command-line tools, on real audio."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from cmse_speechbrain.dataio import AudioFileError, read_audio_checked
from cmse_speechbrain.export import export_model
from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder

from conftest import ROOT, run_recipe
from conftest import sha256 as _sha

REAL_NOISY = ROOT / "recipes/VoiceBank/mini_voicebank/noisy_testset_wav"
REAL_CLEAN = ROOT / "recipes/VoiceBank/mini_voicebank/clean_testset_wav"


def test_from_hparams_loads_a_local_folder_offline(tiny_model_folder):
    enhancer = EnhanceCMCR.from_hparams(source=str(tiny_model_folder))
    state = torch.load(tiny_model_folder / "enhance_model.ckpt", weights_only=True)
    loaded = enhancer.mods.enhance_model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        EnhanceCMCR.from_hparams(source="no/such/model")  # never a hub lookup


@pytest.mark.parametrize(
    "rate,channels,subtype",
    [
        (44100, 2, "PCM_16"),
        (48000, 1, "FLOAT"),
        (8000, 1, "PCM_24"),
        (22050, 6, "PCM_32"),
    ],
)
def test_enhance_file_any_rate_channels_and_format(
    tiny_model_folder, tmp_path, rate, channels, subtype
):
    import torchaudio.functional as AF

    enhancer = EnhanceCMCR.from_hparams(source=str(tiny_model_folder))
    speech = read_audio_checked(REAL_NOISY / "p232_013.flac")
    audio = AF.resample(speech, 16000, rate).numpy()
    path = tmp_path / "in.wav"
    sf.write(path, np.stack([audio] * channels, axis=1), rate, subtype=subtype)
    before = _sha(path)
    enhanced = enhancer.enhance_file(path, tmp_path / "out.wav")
    info = sf.info(tmp_path / "out.wav")
    assert info.samplerate == rate and info.channels == 1
    assert info.frames == len(audio)  # exactly the input length
    assert enhanced.dim() == 1 and torch.isfinite(enhanced).all()
    assert _sha(path) == before
    if channels > 1:
        with pytest.raises(AudioFileError, match=f"in.wav: has {channels} channels"):
            enhancer.enhance_file(path, tmp_path / "out2.wav", mix_down=False)


def test_enhance_file_never_overwrites_its_input(tiny_model_folder, tmp_path):
    enhancer = EnhanceCMCR.from_hparams(source=str(tiny_model_folder))
    path = tmp_path / "a.wav"
    sf.write(path, read_audio_checked(REAL_NOISY / "p232_001.flac").numpy(), 16000)
    before = _sha(path)
    with pytest.raises(ValueError, match="overwrite the input"):
        enhancer.enhance_file(path, path)
    assert _sha(path) == before


def test_chunked_output_agrees_with_whole_file():
    """Tolerance: the chunked output (3 s chunks, 1 s cross-faded overlap)
    matches the whole-file output of the shipped model to within 15 dB SNR
    (the difference is the context the attention sees, not a seam)."""
    enhancer = EnhanceCMCR.from_hparams(source=str(shipped_model_folder()))
    noisy = torch.cat(
        [read_audio_checked(p) for p in sorted(REAL_NOISY.glob("p257_*"))[:4]]
    )
    assert noisy.numel() > 6 * 16000
    enhancer.hparams.chunk_seconds = 0  # whole file
    whole = enhancer.enhance_batch(noisy)
    enhancer.hparams.chunk_seconds = 3.0
    enhancer.hparams.chunk_overlap_seconds = 1.0
    chunked = enhancer.enhance_batch(noisy)
    agreement = 10 * torch.log10(whole.pow(2).sum() / (whole - chunked).pow(2).sum())
    assert agreement > 15.0, float(agreement)


def test_export_of_a_training_run_loads_and_enhances(tmp_path):
    run = tmp_path / "run"
    run_recipe(
        run, "--debug", "--debug_persistently", "--debug_epochs=1", "--debug_batches=1"
    )
    folder = export_model(run, tmp_path / "model")
    with pytest.raises(FileExistsError):
        export_model(run, tmp_path / "model")
    enhancer = EnhanceCMCR.from_hparams(source=str(folder))
    assert enhancer.mods.enhance_model.config["channels"] == [4, 8, 8, 16, 16]
    wav = enhancer.enhance_file(REAL_NOISY / "p232_001.flac")
    assert wav.numel() == sf.info(REAL_NOISY / "p232_001.flac").frames


def _cli(*args):
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cmse_speechbrain import cli; "
            f"sys.exit(cli.{args[0]}(sys.argv[1:]))",
            *args[1:],
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def test_cli_enhance_keeps_going_past_bad_files_then_evaluate(
    tiny_model_folder, tmp_path
):
    inputs = tmp_path / "in dir é"
    (inputs / "sub").mkdir(parents=True)
    names = ["p232_001", "p257_001", "p257_033"]
    for name in names:
        audio = read_audio_checked(REAL_NOISY / f"{name}.flac").numpy()
        sf.write(inputs / "sub" / f"{name}.wav", audio, 16000)
    (inputs / "broken.wav").write_text("this is not audio")
    sf.write(inputs / "empty.wav", np.zeros(0), 16000)
    hashes = {p: _sha(p) for p in inputs.rglob("*.wav")}
    out = tmp_path / "out"
    result = _cli(
        "enhance_main",
        str(inputs),
        str(tmp_path / "missing.wav"),
        "-o",
        str(out),
        "--source",
        str(tiny_model_folder),
        "--spectrogram",
    )
    assert result.returncode == 1, result.stderr
    assert "enhanced 3 of 6 files" in result.stdout
    for bad in [
        "broken.wav: not a readable audio file",
        "empty.wav: empty audio",
        "missing.wav: file not found",
    ]:
        assert bad in result.stderr
    for name in names:
        assert (
            sf.info(out / "sub" / f"{name}.wav").frames
            == sf.info(REAL_NOISY / f"{name}.flac").frames
        )
        assert (out / "sub" / f"{name}.png").stat().st_size > 0
    assert not [p for p in out.rglob(".*")]  # no temporary leftovers
    assert hashes == {p: _sha(p) for p in inputs.rglob("*.wav")}

    result = _cli(
        "evaluate_main",
        "--enhanced",
        str(out / "sub"),
        "--clean",
        str(REAL_CLEAN),
        "--noisy",
        str(REAL_NOISY),
        "-o",
        str(tmp_path / "scores.csv"),
    )
    assert result.returncode == 0, result.stderr
    import csv

    rows = list(csv.DictReader(open(tmp_path / "scores.csv")))
    assert [r["id"] for r in rows] == names
    for row in rows:
        assert 1.0 <= float(row["noisy_pesq"]) <= 4.7
        assert 1.0 <= float(row["enhanced_csig"]) <= 5.0
        assert -30 < float(row["noisy_si_sdr"]) < 40
    assert "PESQ" in result.stdout and "noisy" in result.stdout
