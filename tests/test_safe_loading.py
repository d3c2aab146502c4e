"""Issue 17: loading a model folder never runs code from it.

Every attack is a model folder that would enhance fine if its YAML were
trusted (the tiny model's own YAML plus one hostile line); each must be
refused, naming the file, the line and the tag, before anything runs.
"""

import json
import os
import re
import shutil
import sys
import warnings

import pytest
import soundfile as sf
import torch

from cmse_speechbrain import cli
from cmse_speechbrain.asr import EnhancedASR, enhancer_from_folder
from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.export import SpectrumEnhancer, load_network, noisy_spectrum
from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder
from cmse_speechbrain.safe_yaml import (
    UnsafeModelError,
    check_hyperparams,
    load_hyperparams,
)

from conftest import MINI_VOICEBANK, ROOT

# real VoiceBank-DEMAND
REAL_NOISY = MINI_VOICEBANK / "noisy_testset_wav" / "p232_001.flac"

BOMB = "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 9)
)
# name: (hostile text appended to a good YAML, the tag or problem the error must name)
ATTACKS = {
    "apply": ('pwned: !apply:os.system ["touch PWNED"]', "!apply:os.system"),
    "name": ('pwned: !name:os.system ["touch PWNED"]', "!name:os.system"),
    "new_popen": (
        "pwned: !new:subprocess.Popen [[touch, PWNED]]",
        "!new:subprocess.Popen",
    ),
    "include_outside": ("extra: !include:../outside.yaml", "!include:../outside.yaml"),
    "yaml_bomb": (BOMB, "YAML bomb"),
    "python_tag": (
        'pwned: !!python/object/apply:os.system ["touch PWNED"]',
        "!!python/object/apply:os.system",
    ),
    "tuple_string": (
        'pwned: (!!python/object/apply:os.system ["touch PWNED"])',
        "!!python/object/apply:os.system",
    ),
    "applyref": ('pwned: !applyref:os.system ["touch PWNED"]', "!applyref:os.system"),
    "module": ("pwned: !module:os", "!module:os"),
    "attribute_ref": ("pwned: !ref <enhance_model.__class__>", "plain reference"),
    "arithmetic_ref": ("n: 9\npwned: !ref <n>**<n>**<n>**<n>", "plain reference"),
    "pretrainer_paths": (None, "Pretrainer argument 'paths'"),
}


def _model_folder(tmp_path, tiny_model_folder, name, extra_text=""):
    folder = tmp_path / name
    folder.mkdir()
    good = (tiny_model_folder / "hyperparams.yaml").read_text()
    (folder / "hyperparams.yaml").write_text(good + extra_text)
    shutil.copy(tiny_model_folder / "enhance_model.ckpt", folder)
    return folder


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_hostile_yaml_is_refused_by_name_and_never_runs(
    tiny_model_folder, tmp_path, monkeypatch, attack
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outside.yaml").write_text('pwned: !apply:os.system ["touch PWNED"]\n')
    text, named = ATTACKS[attack]
    good_lines = len((tiny_model_folder / "hyperparams.yaml").read_text().splitlines())
    if attack == "pretrainer_paths":
        folder = _model_folder(tmp_path, tiny_model_folder, attack)
        yaml_text = (
            (folder / "hyperparams.yaml")
            .read_text()
            .replace(
                "    loadables:",
                "    paths:\n        enhance_model: ../outside.ckpt\n    loadables:",
            )
        )
        (folder / "hyperparams.yaml").write_text(yaml_text)
    else:
        folder = _model_folder(tmp_path, tiny_model_folder, attack, text + "\n")
    with pytest.raises(UnsafeModelError) as error:
        EnhanceCMCR.from_hparams(source=str(folder))
    message = str(error.value)
    assert message.startswith(f"{folder / 'hyperparams.yaml'}, line ")
    assert named in message
    if attack not in ("yaml_bomb", "pretrainer_paths", "arithmetic_ref"):
        assert error.value.line == good_lines + 1  # the hostile line
    assert not (tmp_path / "PWNED").exists()


def test_the_issue_payload_first_line_via_cli_and_asr_paths(
    tiny_model_folder, tmp_path, monkeypatch, capsys
):
    """``pwned`` as the first line, loaded the four ways the issue lists."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "model"
    folder.mkdir()
    good = (tiny_model_folder / "hyperparams.yaml").read_text()
    (folder / "hyperparams.yaml").write_text(
        'pwned: !apply:os.system ["touch PWNED"]\n' + good
    )
    shutil.copy(tiny_model_folder / "enhance_model.ckpt", folder)
    code = cli.enhance_main([str(REAL_NOISY), "-o", "out", "--source", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{folder / 'hyperparams.yaml'}, line 1: !apply:os.system" in err
    with pytest.raises(UnsafeModelError, match="line 1: !apply:os.system"):
        enhancer_from_folder(folder)  # the ASR recipe's path to the enhancer
    pipeline = tmp_path / "pipeline"
    shutil.copytree(folder, pipeline / "enhancer")
    (pipeline / "asr").mkdir()
    with pytest.raises(UnsafeModelError, match="line 1: !apply:os.system"):
        EnhancedASR.from_folder(pipeline)
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out").exists()


def test_asr_half_of_a_pipeline_is_checked_too(
    tiny_model_folder, tmp_path, monkeypatch
):
    from speechbrain.dataio.encoder import CTCTextEncoder

    from cmse_speechbrain.asr import CharCTCModel
    from cmse_speechbrain.asr_recipe import export_encoder_asr

    monkeypatch.chdir(tmp_path)
    tokenizer = CTCTextEncoder()
    tokenizer.insert_blank(index=0)
    tokenizer.update_from_iterable(list("AB "))
    model = CharCTCModel(len(tokenizer), cnn_channels=[4], rnn_neurons=8, dnn_neurons=8)
    pipeline = tmp_path / "pipeline"
    shutil.copytree(tiny_model_folder, pipeline / "enhancer")
    export_encoder_asr(model, tokenizer, pipeline / "asr")
    loaded = EnhancedASR.from_folder(pipeline)  # the recipe's own export loads
    assert isinstance(loaded.transcribe_file(REAL_NOISY), str)
    with open(pipeline / "asr" / "hyperparams.yaml", "a") as f:
        f.write("pwned: !new:subprocess.Popen [[touch, PWNED]]\n")
    with pytest.raises(
        UnsafeModelError, match=r"asr/hyperparams.yaml, line \d+: !new:subprocess.Popen"
    ):
        EnhancedASR.from_folder(pipeline)
    assert not (tmp_path / "PWNED").exists()


def test_include_inside_the_folder_and_tuples_still_work(tiny_model_folder, tmp_path):
    folder = _model_folder(
        tmp_path,
        tiny_model_folder,
        "model",
        "extra: !include:more.yaml\npair: (1, 2)\n",
    )
    (folder / "more.yaml").write_text("k: [1, 2]\n")
    enhancer = EnhanceCMCR.from_hparams(source=str(folder))
    assert enhancer.hparams.extra == {"k": [1, 2]} and enhancer.hparams.pair == (1, 2)


def test_shipped_yaml_passes_the_check():
    check_hyperparams(shipped_model_folder() / "hyperparams.yaml")
    hparams = load_hyperparams(shipped_model_folder() / "hyperparams.yaml")
    assert type(hparams["enhance_model"]).__name__ == "CMCRNet"


def test_shipped_model_loads_and_enhances():
    enhancer = EnhanceCMCR.from_hparams(source=str(shipped_model_folder()))
    wav = enhancer.enhance_file(REAL_NOISY)
    assert wav.numel() == sf.info(REAL_NOISY).frames and torch.isfinite(wav).all()


def _fake_run(tmp_path):
    """A training run folder as the recipe leaves it: its YAML and one checkpoint."""
    from speechbrain.utils.checkpoints import Checkpointer

    from cmse_speechbrain.cmcr_net import CMCRNet

    run = tmp_path / "results" / "run"
    run.mkdir(parents=True)
    (run / "hyperparams.yaml").write_text(
        "model: !new:cmse_speechbrain.cmcr_net.CMCRNet\n"
        "    channels: [4, 8, 8, 16, 16]\n    d_model: 16\n    nhead: 2\n"
        "modules:\n    model: !ref <model>\n"
    )
    torch.manual_seed(0)
    model = CMCRNet(channels=[4, 8, 8, 16, 16], d_model=16, nhead=2)
    Checkpointer(run / "save", recoverables={"model": model}).save_checkpoint(
        meta={"pesq": 1.5}
    )
    return run, model


def test_exported_folder_loads_and_names_no_machine_path(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    run, model = _fake_run(tmp_path)
    assert cli.export_main([str(run), "exported", "--torchscript", "--onnx"]) == 0
    folder = tmp_path / "exported"
    enhancer = EnhanceCMCR.from_hparams(source=str(folder), run_opts={"device": "cpu"})
    wav = read_audio_checked(REAL_NOISY)[:16000]
    with torch.no_grad():
        assert torch.allclose(
            enhancer.enhance_batch(wav), model.eval()(wav[None])[0][0], atol=1e-5
        )
    assert (
        '# Exported from training run "run", checkpoint CKPT+'
        in (folder / "hyperparams.yaml").read_text()
    )
    machine = [str(tmp_path), str(ROOT), sys.prefix, "/tmp/", "/home/", "/work/"]
    for path in folder.iterdir():
        data = path.read_bytes()
        assert not [m for m in machine if m.encode() in data], path.name
    # the network files load the checked way
    onnx_net = load_network(folder / "enhance_model.onnx")
    spec = noisy_spectrum(enhancer.mods.enhance_model, wav[None])
    with torch.no_grad():
        eager = SpectrumEnhancer(enhancer.mods.enhance_model)(spec)
    assert (onnx_net(spec) - eager).abs().max() < 1e-4
    with pytest.raises(UnsafeModelError, match="TorchScript is a program"):
        load_network(folder / "enhance_model.pt")
    with pytest.warns(UserWarning, match="trust_code"):
        scripted = load_network(folder / "enhance_model.pt", trust_code=True)
    with torch.no_grad():
        assert (scripted(spec) - eager).abs().max() < 1e-4


def test_onnx_that_cannot_be_checked_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from cmse_speechbrain.cmcr_net import CMCRNet
    from cmse_speechbrain.export import export_onnx

    model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2).eval()
    path = export_onnx(model, tmp_path / "net.onnx", example_seconds=0.5)
    proto = onnx.load(str(path))
    proto.graph.node[0].domain = "com.example.native"
    onnx.save(proto, str(tmp_path / "custom.onnx"))
    with pytest.raises(UnsafeModelError, match="custom operator com.example.native"):
        load_network(tmp_path / "custom.onnx")
    proto = onnx.load(str(path))
    onnx.save(
        proto,
        str(tmp_path / "external.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    with pytest.raises(UnsafeModelError, match="stored in an external file"):
        load_network(tmp_path / "external.onnx")


def test_trust_code_loads_a_folder_with_another_speechbrain_class(
    tiny_model_folder, tmp_path, monkeypatch, capsys
):
    extra = "features: !new:speechbrain.lobes.features.Fbank\n    n_mels: 40\n"
    folder = _model_folder(tmp_path, tiny_model_folder, "model", extra)
    line = len((tiny_model_folder / "hyperparams.yaml").read_text().splitlines()) + 1
    with pytest.raises(
        UnsafeModelError, match=f"line {line}: !new:speechbrain.lobes.features.Fbank"
    ):
        EnhanceCMCR.from_hparams(source=str(folder))
    with pytest.warns(UserWarning, match="trust_code=True"):
        enhancer = EnhanceCMCR.from_hparams(source=str(folder), trust_code=True)
    assert type(enhancer.hparams.features).__name__ == "Fbank"
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = cli.enhance_main(
            [str(REAL_NOISY), "-o", "out", "--source", str(folder), "--trust-code"]
        )
    assert code == 0, capsys.readouterr().err
    assert any("may run any code" in str(w.message) for w in caught)
    assert (
        sf.info(tmp_path / "out" / "p232_001.wav").frames == sf.info(REAL_NOISY).frames
    )


def test_tampered_weights_and_meta_json_stay_data(tiny_model_folder, tmp_path):
    """The weights file: pickled code is refused (weights_only=True)."""
    import os
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch '{marker}'",))

    folder = _model_folder(tmp_path, tiny_model_folder, "model")
    (folder / "enhance_model.ckpt").write_bytes(pickle.dumps(Payload()))
    (folder / "checkpoint_meta.json").write_text(json.dumps({"pesq": 1.0}))
    with pytest.raises(ValueError, match="enhance_model.ckpt: cannot be loaded safely"):
        EnhanceCMCR.from_hparams(source=str(folder))
    assert not marker.exists()


def test_loadable_names_cannot_leave_the_folder(tiny_model_folder, tmp_path):
    folder = _model_folder(tmp_path, tiny_model_folder, "model")
    text = (
        (folder / "hyperparams.yaml")
        .read_text()
        .replace(
            "        enhance_model: !ref <enhance_model>\n",
            "        ../../outside: !ref <enhance_model>\n",
        )
    )
    (folder / "hyperparams.yaml").write_text(text)
    with pytest.raises(ValueError, match="'../../outside' is not a plain file name"):
        EnhanceCMCR.from_hparams(source=str(folder))


@pytest.mark.parametrize(
    "name, text, reason",
    [
        (
            "tag_directive",
            "%TAG !p! tag:yaml.org,2002:python/\n---\n"
            'pwned: !p!object/apply:os.system ["touch PWNED"]\n',
            "!!python/object/apply:os.system",
        ),
        (
            "deep_nesting",
            "x: " + "[" * 100 + "]" * 100 + "\n",
            "nested deeper than 64 levels",
        ),
        (
            "over_1_mb",
            "x: '" + "a" * 1_100_000 + "'\n",
            "a model YAML may have 1000000",
        ),
    ],
)
def test_directives_nesting_and_size_are_refused(
    tmp_path, monkeypatch, name, text, reason
):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(UnsafeModelError, match=re.escape(reason)):
        check_hyperparams(path)
    assert not (tmp_path / "PWNED").exists()


def test_a_pipe_instead_of_a_file_is_refused(tmp_path):
    path = tmp_path / "hyperparams.yaml"
    os.mkfifo(path)
    with pytest.raises(UnsafeModelError, match="is not a regular file"):
        check_hyperparams(path)
