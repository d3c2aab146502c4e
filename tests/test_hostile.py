"""Issue 29: corpus mode, the listening page, model folders and the Python API
tried as a hostile user would; on real VoiceBank-DEMAND recordings. Each test
is named after the issue's item."""

import contextlib
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


def test_2_a_non_finite_output_is_a_named_failure_and_no_file(tiny_model_folder, tmp_path, capsys):
    inputs = tmp_path / "in"
    speech, rate = sf.read(NOISY[0], dtype="float32")
    inputs.mkdir()
    sf.write(inputs / "loud.wav", speech * 1e37, rate, subtype="FLOAT")  # finite samples
    sf.write(inputs / "max.wav", np.sign(speech + 1e-9) * 3.4e38, rate, subtype="FLOAT")
    _real_wavs(inputs, count=1)
    out = tmp_path / "out"
    assert _enhance(inputs, "-o", out, "--source", tiny_model_folder) == 1
    err = capsys.readouterr().err
    for name in ("loud.wav", "max.wav"):
        assert f"{inputs / name}: the enhanced signal has NaN or infinite samples" in err
        assert not (out / name).exists()
    assert sf.info(out / "in0.wav").frames == len(speech)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    # a model folder whose weights are NaN is refused when it loads, naming the file
    broken = tmp_path / "nan_model"
    shutil.copytree(tiny_model_folder, broken)
    state = torch.load(broken / "enhance_model.ckpt")
    state[next(k for k, v in state.items() if v.is_floating_point())].fill_(float("nan"))
    torch.save(state, broken / "enhance_model.ckpt")
    assert _enhance(inputs / "in0.wav", "-o", tmp_path / "o2", "--source", broken) == 2
    assert f"{broken / 'enhance_model.ckpt'}: the weights" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def _without_pretrainer(source, folder):
    shutil.copytree(source, folder)
    text = (folder / "hyperparams.yaml").read_text()
    (folder / "hyperparams.yaml").write_text(text[: text.index("pretrainer:")])
    return folder


@pytest.mark.parametrize("trust", [False, True])
def test_3_a_folder_whose_weights_are_not_loaded_is_refused(tiny_model_folder, tmp_path, capsys, trust):
    from cmse_speechbrain.inference import EnhanceCMCR

    folder = _without_pretrainer(tiny_model_folder, tmp_path / "model")
    wav = _real_wavs(tmp_path / "in", count=1)[0]
    trust_flag = ["--trust-code"] if trust else []
    with pytest.warns(UserWarning) if trust else contextlib.nullcontext():
        code = _enhance(wav, "-o", tmp_path / "out", "--source", folder, *trust_flag)
    assert code == 2 and not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert f"{folder / 'hyperparams.yaml'}: no 'pretrainer' loads the weights of 'enhance_model'" in err
    with pytest.raises(ValueError, match="refusing random weights"), \
            pytest.warns(UserWarning) if trust else contextlib.nullcontext():
        EnhanceCMCR.from_hparams(source=folder, trust_code=trust)
