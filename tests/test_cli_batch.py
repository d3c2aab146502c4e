"""Issue 19: what happens around the audio in ``cmse-enhance``,
``cmse-evaluate`` and ``cmse-export``; one test per failure of the issue,
on real VoiceBank-DEMAND recordings, with the tiny model."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from cmse_speechbrain import cli

from conftest import MINI_VOICEBANK, ROOT, sha256

NOISY = MINI_VOICEBANK / "noisy_testset_wav"
CLEAN = MINI_VOICEBANK / "clean_testset_wav"
SHARED = ROOT.parent / "shared" / "data"


def _real(name="p232_001", seconds=None, rate=16000):
    audio, file_rate = sf.read(NOISY / f"{name}.flac", dtype="float32")
    assert file_rate == 16000
    audio = audio[: int(seconds * 16000)] if seconds else audio
    if rate != 16000:
        audio = AF.resample(torch.from_numpy(audio), 16000, rate).numpy()
    return audio


def _enhance(capsys, *args):
    code = cli.enhance_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _failure_lines(err):
    return [line.strip() for line in err.splitlines() if line.startswith("  ")]


def test_1_same_names_are_refused_naming_both_and_duplicates_enhanced_once(
    tiny_model_folder, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    for folder, name in [("x", "p232_001"), ("y", "p257_001")]:
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "s.wav", _real(name, 1.0), 16000)
    code, out, err = _enhance(
        capsys, "x/s.wav", "y/s.wav", "-o", "out", "--source", tiny_model_folder
    )
    assert code == 1 and "enhanced 0 of 2" in out
    lines = _failure_lines(err)
    assert any(line.startswith("x/s.wav:") and "y/s.wav" in line for line in lines), (
        lines
    )
    assert any(line.startswith("y/s.wav:") and "x/s.wav" in line for line in lines), (
        lines
    )
    assert not (tmp_path / "out" / "s.wav").exists()  # no arbitrary winner

    (tmp_path / "t").mkdir()
    sf.write(tmp_path / "t" / "t.wav", _real("p232_001", 1.0), 16000)
    sf.write(tmp_path / "t" / "t.flac", _real("p257_001", 1.0), 16000)
    code, out, err = _enhance(capsys, "t", "-o", "out2", "--source", tiny_model_folder)
    assert code == 1 and "enhanced 0 of 2" in out
    assert any("t/t.flac" in line and "t/t.wav" in line for line in _failure_lines(err))

    # one file three times, and once more through its folder: enhanced once
    code, out, err = _enhance(
        capsys,
        "x/s.wav",
        "x/s.wav",
        "x/s.wav",
        "x",
        "-o",
        "out3",
        "--source",
        tiny_model_folder,
    )
    assert code == 0 and "enhanced 1 of 1" in out, err


def test_2_output_folder_inside_the_input_is_never_read_and_reruns_replace(
    tiny_model_folder, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "n").mkdir()
    sf.write(tmp_path / "n" / "a.wav", _real("p232_001", 1.0), 16000)
    for _ in range(2):
        code, out, err = _enhance(
            capsys, "n", "-o", "n/enh", "--source", tiny_model_folder
        )
        assert code == 0 and "enhanced 1 of 1" in out, err
    assert sorted(
        p.relative_to(tmp_path).as_posix() for p in (tmp_path / "n").rglob("*")
    ) == ["n/a.wav", "n/enh", "n/enh/a.wav"]
    # held: the output folder equal to the input folder never overwrites an input
    before = sha256(tmp_path / "n" / "a.wav")
    code, out, err = _enhance(capsys, "n", "-o", "n", "--source", tiny_model_folder)
    assert code == 1 and "would overwrite an input" in err
    assert sha256(tmp_path / "n" / "a.wav") == before


RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000, 7999]
FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
}


def test_3_output_has_exactly_the_input_length_and_rate(
    tiny_model_folder, tmp_path, capsys
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    speech = _real("p232_013", 0.4)
    for rate in RATES:
        audio = (
            AF.resample(torch.from_numpy(speech), 16000, rate).numpy()
            if rate != 16000
            else speech
        )
        # odd, not a ratio multiple
        length = len(audio) - 3 if rate % 2 else len(audio) - 1
        if rate not in (8000, 16000):
            assert length * 16000 % rate, rate
        for ext, (fmt, subtype) in FORMATS.items():
            sf.write(
                inputs / f"r{rate}_{ext}.{ext}",
                audio[:length],
                rate,
                format=fmt,
                subtype=subtype,
            )
    sf.write(
        inputs / "r44100_aiff.aiff",
        AF.resample(torch.from_numpy(speech), 16000, 44100)[:26467].numpy(),
        44100,
        format="AIFF",
    )
    # real recordings at their own rates (48 kHz VCTK, 44.1 kHz stereo FLAC)
    if SHARED.is_dir():
        for source in [
            SHARED / "vctk_p234" / "p234_001.wav",
            SHARED / "real_noisy" / "speech1.flac",
        ]:
            if source.is_file():
                audio, rate = sf.read(
                    source, frames=int(0.77 * sf.info(source).samplerate) + 1
                )
                sf.write(inputs / f"native_{source.stem}{source.suffix}", audio, rate)
    code, out, err = _enhance(
        capsys, inputs, "-o", tmp_path / "out", "--source", tiny_model_folder
    )
    assert code == 0, err
    files = sorted(inputs.iterdir())
    assert len(files) >= len(RATES) * len(FORMATS) + 1
    wrong = []
    for path in files:
        info, out_info = sf.info(path), sf.info(tmp_path / "out" / f"{path.stem}.wav")
        if (out_info.frames, out_info.samplerate) != (info.frames, info.samplerate):
            wrong.append((path.name, info.frames, out_info.frames, out_info.samplerate))
    assert not wrong


def test_4_a_255_character_name_works(tiny_model_folder, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    name = "p232_001_" + "x" * 242  # a 251-character stem
    sf.write(inputs / f"{name}.wav", _real("p232_001", 1.0), 16000)
    code, out, err = _enhance(
        capsys,
        inputs,
        "-o",
        tmp_path / "out",
        "--source",
        tiny_model_folder,
        "--spectrogram",
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{name}.png",
        f"{name}.wav",
    ]


@pytest.mark.parametrize("value", ["0.001", "nan", "inf", "0", "-5", "ten"])
def test_5_bad_chunk_seconds_are_refused_up_front(
    tiny_model_folder, tmp_path, capsys, value
):
    sf.write(tmp_path / "a.wav", _real("p232_001", 1.0), 16000)
    with pytest.raises(SystemExit) as stop:
        cli.enhance_main(
            [
                str(tmp_path / "a.wav"),
                "-o",
                str(tmp_path / "out"),
                "--source",
                str(tiny_model_folder),
                f"--chunk-seconds={value}",
            ]
        )
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert len([line for line in err.splitlines() if "error:" in line]) == 1
    assert "--chunk-seconds" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["1", "0.5"])
def test_5_short_chunks_shorten_the_overlap(tiny_model_folder, tmp_path, capsys, value):
    path = NOISY / "p232_001.flac"  # 1.7 s: several chunks
    code, out, err = _enhance(
        capsys,
        path,
        "-o",
        tmp_path / "out",
        "--source",
        tiny_model_folder,
        f"--chunk-seconds={value}",
    )
    assert code == 0, err
    assert sf.info(tmp_path / "out" / "p232_001.wav").frames == sf.info(path).frames


def test_6_cuda_without_a_gpu_says_so(tiny_model_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = _enhance(
        capsys,
        NOISY / "p232_001.flac",
        "-o",
        tmp_path / "out",
        "--source",
        tiny_model_folder,
        "--device",
        "cuda",
    )
    assert code == 2
    assert err.strip() == "cmse-enhance: CUDA is not available (device 'cuda')"


def test_7_evaluate_refuses_a_length_mismatch_naming_both_lengths(tmp_path, capsys):
    enhanced, clean = tmp_path / "enh", tmp_path / "clean"
    enhanced.mkdir()
    clean.mkdir()
    for name, cut in [("p232_001", 3), ("p232_013", None)]:
        reference, _ = sf.read(CLEAN / f"{name}.flac")
        noisy, _ = sf.read(NOISY / f"{name}.flac")
        sf.write(clean / f"{name}.wav", reference, 16000)
        # a few samples / half the file
        short = len(noisy) - cut if cut else len(noisy) // 2
        sf.write(enhanced / f"{name}.wav", noisy[:short], 16000)
    code = cli.evaluate_main(
        [
            "--enhanced",
            str(enhanced),
            "--clean",
            str(clean),
            "-o",
            str(tmp_path / "s.csv"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    full = sf.info(clean / "p232_013.wav").frames
    assert (
        f"{enhanced / 'p232_013.wav'}: {full // 2} samples (at 16 kHz) "
        f"but its clean reference {clean / 'p232_013.wav'} has {full}" in err
    )
    assert [row["id"] for row in csv.DictReader(open(tmp_path / "s.csv"))] == [
        "p232_001"
    ]


def test_8_export_without_checkpoint_is_one_line_and_paths_are_not_repeated(
    tiny_model_folder, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    (run / "save").mkdir(parents=True)
    (run / "hyperparams.yaml").write_text("modules: {}\n")
    assert cli.export_main(["run", "model"]) == 1
    err = capsys.readouterr().err
    assert err == "cmse-export: run/save: no checkpoint with a model\n"
    assert not (tmp_path / "model").exists()

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "u.wav").write_text("not audio")
    code, out, err = _enhance(
        capsys, "m/u.wav", "-o", "out", "--source", tiny_model_folder
    )
    assert code == 1
    lines = _failure_lines(err)
    assert len(lines) == 1 and lines[0].startswith(
        "m/u.wav: not a readable audio file"
    ), lines


@pytest.mark.parametrize(
    "signum,code,name",
    [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")],
)
def test_interrupt_is_one_line_and_leaves_no_partial_file(
    tiny_model_folder, tmp_path, signum, code, name
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    speech = _real("p232_013")
    for i in range(40):
        sf.write(inputs / f"u{i:02d}.wav", speech, 16000)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from cmse_speechbrain import cli; "
            "sys.exit(cli.enhance_main())",
            str(inputs),
            "-o",
            str(out),
            "--source",
            str(tiny_model_folder),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # a suite started in the background by a shell inherits SIGINT ignored,
        # and Python then keeps it ignored: the child gets the default back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_dir() and list(out.glob("u*.wav"))):
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    lines = [
        line
        for line in err.replace("\r", "\n").splitlines()
        if line and "enhancing" not in line
    ]
    assert lines == [f"cmse-enhance: stopped by {name}; no partial file left"], lines
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    for path in out.iterdir():
        assert sf.info(path).frames == len(speech)  # each output whole


def test_held_quiet_and_dc_inputs_and_symlink_loops(
    tiny_model_folder, tmp_path, capsys
):
    """What the issue found to hold stays so: -80 dBFS and DC-offset inputs
    give finite outputs at their own level; a symbolic link loop is not
    followed."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    speech = _real("p232_001", 1.0)
    quiet = speech / np.abs(speech).max() * 10 ** (-80 / 20)
    sf.write(inputs / "quiet.wav", quiet, 16000, subtype="FLOAT")
    sf.write(inputs / "dc.wav", 0.3 * speech + 0.4, 16000)
    (inputs / "loop").symlink_to(inputs, target_is_directory=True)
    code, out, err = _enhance(
        capsys, inputs, "-o", tmp_path / "out", "--source", tiny_model_folder
    )
    assert code == 0 and "enhanced 2 of 2" in out, err
    for name in ["quiet", "dc"]:
        before, _ = sf.read(inputs / f"{name}.wav")
        after, _ = sf.read(tmp_path / "out" / f"{name}.wav")
        assert np.isfinite(after).all()
        # 16-bit floor
        assert np.sqrt(np.mean(after**2)) < 2 * np.sqrt(np.mean(before**2)) + 1e-4
