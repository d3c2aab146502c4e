"""Issue 29: corpus mode, the listening page, model folders and the Python API
tried as a hostile user would; on real VoiceBank-DEMAND recordings. Each test
is named after the issue's item."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from cmse_speechbrain import cli
from conftest import MINI_VOICEBANK, sha256

NOISY = sorted((MINI_VOICEBANK / "noisy_testset_wav").glob("*.flac"))


def _real_wavs(folder, count=3, prefix="in"):
    """Real noisy recordings as 16-bit WAVs ``folder/<prefix><k>.wav``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, source in enumerate(NOISY[:count]):
        audio, rate = sf.read(source, dtype="float32")
        paths.append(folder / f"{prefix}{k}.wav")
        sf.write(paths[-1], audio, rate, subtype="PCM_16")
    return paths


def _enhance(*args):
    return cli.enhance_main([str(a) for a in args])


def test_1_output_manifest_never_replaces_an_input_or_a_foreign_file(tiny_model_folder, tmp_path, capsys):
    wavs = _real_wavs(tmp_path / "om")
    before = {path: sha256(path) for path in wavs}
    out = tmp_path / "out"
    # the output manifest named as an input file
    assert _enhance(wavs[0], "-o", out, "--source", tiny_model_folder, "--output-manifest", wavs[0]) == 2
    assert "must end in .csv or .json" in capsys.readouterr().err
    # ... with a manifest extension: an audio file renamed .csv is an input too
    named = tmp_path / "om" / "take.csv"
    shutil.copy(wavs[1], named)
    assert _enhance(named, "-o", out, "--source", tiny_model_folder, "--output-manifest", named) == 2
    assert f"would overwrite the input {named}" in capsys.readouterr().err
    # in --manifest mode, an existing audio file that is not an input
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"ID,wav\nu0,{wavs[0]}\n")
    foreign = tmp_path / "other.csv"
    shutil.copy(wavs[2], foreign)
    assert _enhance("--manifest", manifest, "-o", out, "--source", tiny_model_folder,
                    "--output-manifest", foreign) == 2
    assert "exists and is not a manifest cmse-enhance wrote" in capsys.readouterr().err
    # the failure manifest beside it may not replace an input either
    shutil.copy(wavs[2], tmp_path / "x_failures.csv")
    assert _enhance("--manifest", manifest, "-o", out, "--source", tiny_model_folder,
                    "--output-manifest", tmp_path / "x.csv") == 2
    assert "x_failures.csv exists and is not a manifest" in capsys.readouterr().err
    assert {path: sha256(path) for path in wavs} == before
    assert sha256(foreign) == sha256(wavs[2])
    # its own manifest from an earlier run is replaced
    assert _enhance("--manifest", manifest, "-o", out, "--source", tiny_model_folder,
                    "--output-manifest", tmp_path / "ok.json") == 0
    assert _enhance("--manifest", manifest, "-o", out, "--source", tiny_model_folder,
                    "--output-manifest", tmp_path / "ok.json", "--overwrite") == 0
    assert list(json.loads((tmp_path / "ok.json").read_text())) == ["u0"]
