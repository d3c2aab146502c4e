"""One record of constructor arguments: an exported model folder rebuilds the
network it was written from, and a folder that drifts from it is refused."""

import inspect

import pytest
import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.checkpoints import Checkpointer

from cmse_speechbrain import export
from cmse_speechbrain.asr import CharCTCModel
from cmse_speechbrain.cmcr_net import CMCRNet
from cmse_speechbrain.export import check_model_folder, inference_yaml
from cmse_speechbrain.inference import shipped_model_folder
from cmse_speechbrain.init_record import init_yaml
from cmse_speechbrain.safe_yaml import load_hyperparams

SMALL = dict(channels=[4, 8, 8, 16, 16], d_model=16, nhead=2)
VARIANTS = {
    "default": {},
    "causal_windowed": dict(causal=True, attention_window=16, time_kernel=2),
    "control": dict(use_cm=False, control_width=8),
    "mapping": dict(output_type="mapping", input_compression=1.0),
}


def yaml_arguments(path, key):
    """The argument names written under ``key`` in a YAML file (not built)."""
    with open(path, encoding="utf-8") as fin:
        return list(ruamel.yaml.YAML().load(fin)[key])


@pytest.mark.parametrize("variant", VARIANTS)
def test_exported_yaml_rebuilds_the_recorded_arguments(tmp_path, variant):
    model = CMCRNet(**SMALL, **VARIANTS[variant])
    (tmp_path / "hyperparams.yaml").write_text(inference_yaml(model))
    rebuilt = load_hyperparams(tmp_path / "hyperparams.yaml")["enhance_model"]
    assert rebuilt.config == model.config
    assert (
        list(rebuilt.config) == list(inspect.signature(CMCRNet.__init__).parameters)[1:]
    )
    assert yaml_arguments(tmp_path / "hyperparams.yaml", "enhance_model") == list(
        model.config
    )
    check_model_folder(tmp_path, model)


def test_a_folder_that_drifts_is_refused(tmp_path):
    model = CMCRNet(**SMALL, causal=True, attention_window=16)
    path = tmp_path / "hyperparams.yaml"
    path.write_text(inference_yaml(model).replace("    attention_window: 16\n", ""))
    with pytest.raises(
        ValueError,
        match=r"hyperparams.yaml: rebuilds CMCRNet with attention_window=None",
    ):
        check_model_folder(tmp_path, model)
    path.write_text(inference_yaml(CMCRNet(**SMALL, cm_repeats=2)))
    with pytest.raises(ValueError, match="cm_repeats=2, the network has cm_repeats=3"):
        check_model_folder(tmp_path, CMCRNet(**SMALL))


def test_export_model_refuses_a_yaml_that_drifts(monkeypatch, tmp_path):
    """export_model loads its own YAML back: a writer that loses an argument
    leaves no folder behind."""
    run = tmp_path / "run"
    model = CMCRNet(channels=[4, 8, 8, 16, 16], d_model=16, nhead=2, mask_bound=3.0)
    (run / "save").mkdir(parents=True)
    (run / "hyperparams.yaml").write_text(
        "modules:\n    model: !new:cmse_speechbrain.cmcr_net.CMCRNet\n"
        "        channels: [4, 8, 8, 16, 16]\n        d_model: 16\n        nhead: 2\n"
        "        mask_bound: 3.0\n"
    )
    Checkpointer(run / "save", {"model": model}).save_checkpoint(meta={"quality": 1.0})
    written = export.inference_yaml
    monkeypatch.setattr(
        export,
        "inference_yaml",
        lambda *a, **k: written(*a, **k).replace("    mask_bound: 3.0\n", ""),
    )
    with pytest.raises(
        ValueError, match="mask_bound=2.0, the network has mask_bound=3.0"
    ):
        export.export_model(run, tmp_path / "model")
    assert not (tmp_path / "model").exists()
    monkeypatch.setattr(export, "inference_yaml", written)
    folder = export.export_model(run, tmp_path / "model")
    assert (
        load_hyperparams(folder / "hyperparams.yaml")["enhance_model"].config
        == model.config
    )


def test_shipped_yaml_names_every_argument_of_its_network():
    """The shipped folder writes every constructor argument (a default that
    changes in the code cannot change the shipped network), rebuilds the
    network its weights belong to, and the record adds nothing to them."""
    folder = shipped_model_folder()
    arguments = list(inspect.signature(CMCRNet.__init__).parameters)[1:]
    assert yaml_arguments(folder / "hyperparams.yaml", "enhance_model") == arguments
    model = load_hyperparams(folder / "hyperparams.yaml")["enhance_model"]
    check_model_folder(folder, model)
    weights = torch.load(
        folder / "enhance_model.ckpt", map_location="cpu", weights_only=True
    )
    assert list(weights) == list(model.state_dict())
    assert folder.joinpath("hyperparams.yaml").read_text() == inference_yaml(
        model, "realmix_ship", "CKPT+2026-11-27+11-08-44+00"
    )


def test_recogniser_record_rebuilds_it():
    model = CharCTCModel(30, cnn_channels=(4,), rnn_neurons=8, dnn_neurons=8)
    # tuples recorded as YAML gives them back
    assert model.config["cnn_channels"] == [4]
    text = init_yaml(model)
    assert text.startswith("!new:cmse_speechbrain.asr.CharCTCModel\n")
    assert load_hyperpyyaml("encoder: " + text)["encoder"].config == model.config
    assert list(model.state_dict()) == list(
        CharCTCModel(30, cnn_channels=[4], rnn_neurons=8, dnn_neurons=8).state_dict()
    )
