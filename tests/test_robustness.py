"""Reliability: bad inputs, interrupted training, disk problems, tampered
checkpoints, large batches. Inputs are made from the shipped real audio."""

import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from cmse_speechbrain import cli, corpus, dataio
from cmse_speechbrain.checkpoints import AtomicCheckpointer, CheckpointError
from cmse_speechbrain.dataio import (
    AudioFileError,
    read_audio_checked,
    write_audio_atomic,
)
from cmse_speechbrain.inference import EnhanceCMCR

from conftest import MINI_VOICEBANK, ROOT, recipe_command, run_recipe, sha256

SPEECH = MINI_VOICEBANK / "noisy_testset_wav" / "p232_013.flac"  # 3.9 s, real


def _speech(rate=16000):
    audio = read_audio_checked(SPEECH)
    return audio.numpy() if rate == 16000 else AF.resample(audio, 16000, rate).numpy()


def _make_inputs(folder):
    """Every kind of input of the issue; name -> expected ('ok' or an error text)."""
    folder.mkdir(parents=True)
    speech = _speech()
    cases = {}

    def write(name, audio, rate=16000, subtype="PCM_16", expect="ok"):
        sf.write(folder / name, audio, rate, subtype=subtype)
        cases[name] = expect

    write("empty.wav", np.zeros(0), expect="empty audio")
    write("one sample.wav", speech[:1], expect="too short")
    write("shorter than a frame.wav", speech[:300], expect="too short")
    write("all zeros.wav", np.zeros(16000))
    nan = speech.copy()
    nan[1000] = np.nan
    write("nan.wav", nan, subtype="FLOAT", expect="NaN or infinite")
    inf = speech.copy()
    inf[2000] = np.inf
    write("inf.wav", inf, subtype="FLOAT", expect="NaN or infinite")
    write("clipped.wav", np.clip(speech * 20, -1, 1))
    for rate in [8000, 22050, 44100, 48000]:
        write(f"rate_{rate}.wav", _speech(rate), rate)
    for subtype in ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]:
        write(f"bits_{subtype}.wav", speech, subtype=subtype)
    write("stereo.wav", np.stack([speech, 0.5 * speech], 1))
    write("six channels.wav", np.stack([speech] * 6, 1))
    full = (folder / "bits_PCM_16.wav").read_bytes()
    (folder / "truncated header.wav").write_bytes(full[:30])
    cases["truncated header.wav"] = "not a readable audio file"
    (folder / "text.wav").write_text("this is a text file, not audio\n")
    cases["text.wav"] = "not a readable audio file"
    return cases


def test_every_bad_input_gets_a_result_or_a_named_error(tiny_model_folder, tmp_path):
    inputs = tmp_path / "inputs with spaces ü"
    cases = _make_inputs(inputs)
    missing = tmp_path / "missing file.wav"
    hashes = {p.name: sha256(p) for p in inputs.iterdir()}
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cmse_speechbrain import cli; "
            "sys.exit(cli.enhance_main())",
            str(inputs),
            str(missing),
            "-o",
            str(out),
            "--source",
            str(tiny_model_folder),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 1
    failures = {
        line.strip() for line in result.stderr.splitlines() if line.startswith("  ")
    }
    for name, expect in cases.items():
        output = out / (os.path.splitext(name)[0] + ".wav")
        if expect == "ok":
            assert output.exists(), (name, result.stderr[-2000:])
            info = sf.info(output)
            assert info.channels == 1
            assert info.samplerate == sf.info(inputs / name).samplerate
            assert info.frames == sf.info(inputs / name).frames  # exact length
            assert np.isfinite(sf.read(output)[0]).all()
        else:
            assert not output.exists(), name
            assert any(str(inputs / name) in f and expect in f for f in failures), (
                name,
                failures,
            )
    assert any(str(missing) in f and "file not found" in f for f in failures)
    n_bad = sum(e != "ok" for e in cases.values()) + 1
    assert f"{n_bad} failed" in result.stderr
    assert hashes == {p.name: sha256(p) for p in inputs.iterdir()}  # inputs untouched
    assert not list(out.glob(".*"))  # no temporary leftovers


def test_enhance_file_and_prepare_name_the_bad_file(tiny_model_folder, tmp_path):
    cases = _make_inputs(tmp_path / "in")
    enhancer = EnhanceCMCR.from_hparams(source=str(tiny_model_folder))
    for name, expect in cases.items():
        if expect != "ok":
            with pytest.raises(AudioFileError, match=expect) as error:
                enhancer.enhance_file(tmp_path / "in" / name)
            assert name in str(error.value)


def test_unreadable_folder_is_reported_not_raised(tmp_path, monkeypatch):
    (tmp_path / "ok").mkdir()
    sf.write(tmp_path / "ok" / "a.wav", _speech()[:8000], 16000)

    def walk(top, onerror=None, **kwargs):  # root reads any folder: simulate
        onerror(PermissionError(13, "Permission denied", str(top)))
        return iter(())

    monkeypatch.setattr(corpus.os, "walk", walk)
    found = corpus.collect_inputs([tmp_path / "ok"])
    assert found == [(tmp_path / "ok", None, "cannot read folder (Permission denied)")]


def test_disk_full_leaves_no_partial_file(tmp_path, monkeypatch):
    real_write = sf.write

    def full_disk(path, data, *args, **kwargs):
        real_write(path, data[: len(data) // 2], *args, **kwargs)  # half written...
        raise OSError(28, "No space left on device")  # ... then the disk is full

    monkeypatch.setattr(dataio.sf, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_audio_atomic(tmp_path / "out.wav", _speech(), 16000)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_refused_before_any_work(tiny_model_folder, tmp_path):
    blocker = tmp_path / "not a folder"
    blocker.write_text("a file where the output folder should be")
    sf.write(tmp_path / "a.wav", _speech()[:16000], 16000)
    code = cli.enhance_main(
        [
            str(tmp_path / "a.wav"),
            "-o",
            str(blocker / "out"),
            "--source",
            str(tiny_model_folder),
        ]
    )
    assert code == 2  # refused before any work (issue 29, item 10)
    assert blocker.read_text().startswith("a file")


def test_tampered_and_truncated_model_checkpoints_are_refused(
    tiny_model_folder, tmp_path
):
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch '{marker}'",))

    for name, content in [
        ("truncated", (tiny_model_folder / "enhance_model.ckpt").read_bytes()[:5000]),
        ("tampered", pickle.dumps(Payload())),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "hyperparams.yaml").write_text(
            (tiny_model_folder / "hyperparams.yaml").read_text()
        )
        (folder / "enhance_model.ckpt").write_bytes(content)
        with pytest.raises(ValueError, match="cannot be loaded safely"):
            EnhanceCMCR.from_hparams(source=str(folder))
    assert not marker.exists()  # the pickled code never ran


def test_tampered_training_checkpoint_is_refused_by_name(tmp_path):
    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(tmp_path, recoverables={"model": model})
    saved = checkpointer.save_checkpoint()
    (saved.path / "model.ckpt").write_bytes(b"garbage that is not a checkpoint")
    with pytest.raises(CheckpointError, match=re.escape(saved.path.name)):
        checkpointer.recover_if_possible()


def _final_test_pesq(out):
    return json.loads((out / "test_summary.json").read_text())["enhanced"]["pesq"]


def test_random_sigkills_then_resume_match_an_uninterrupted_run(tmp_path):
    extra = [
        "--number_of_epochs=3",
        "--valid_speakers=[p287]",
        "--ckpt_interval_minutes=0",
    ]
    reference = tmp_path / "reference"
    run_recipe(reference, *extra)
    out = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    for _ in range(3):  # several kills at random moments
        proc = subprocess.Popen(
            recipe_command(out, *extra),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(3.0, 12.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        for ckpt in (out / "save").glob("CKPT+*"):  # never a half-written one
            assert (ckpt / "CKPT.yaml").exists() and (ckpt / "model.ckpt").exists()
            torch.load(ckpt / "model.ckpt", weights_only=True)
    assert kills >= 2
    run_recipe(out, *extra)
    assert abs(_final_test_pesq(out) - _final_test_pesq(reference)) < 0.2


def _rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_thousand_files_flat_memory_and_two_concurrent_writers(
    tiny_model_folder, tmp_path
):
    speech = _speech()
    inputs = tmp_path / "many"
    inputs.mkdir()
    for i in range(1000):
        start = (i * 997) % (len(speech) - 8000)
        sf.write(inputs / f"utt_{i:04d}.wav", speech[start : start + 8000], 16000)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-c",
        "import sys; from cmse_speechbrain import cli; sys.exit(cli.enhance_main())",
        str(inputs),
        "-o",
        str(out),
        "--source",
        str(tiny_model_folder),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    second = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    samples = []  # (files written so far, RSS of the first process)
    while first.poll() is None:
        samples.append(
            (len(list(out.glob("*.wav"))) if out.exists() else 0, _rss_mb(first.pid))
        )
        time.sleep(0.5)
    second.wait()
    assert first.returncode == 0, first.stderr[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    outputs = sorted(out.glob("*.wav"))
    assert len(outputs) == 1000
    for path in outputs[::50]:
        assert sf.info(path).frames == 8000  # each file whole, never interleaved
    assert not list(out.glob(".*"))
    early = [rss for done, rss in samples if 100 <= done <= 400]
    # while files are still being written: the end of the run (all 1000
    # written, the other process's last files awaited, the summary) is a
    # fixed cost, not growth with the number of files
    late = [rss for done, rss in samples if 700 <= done < 1000]
    assert early and late, samples
    assert max(late) - max(early) < 100, (max(early), max(late))
