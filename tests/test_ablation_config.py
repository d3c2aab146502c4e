"""The ablation study's variants build the networks and losses they claim."""

import pathlib
import sys

import pytest
from hyperpyyaml import load_hyperpyyaml

from cmse_speechbrain.cmcr_net import CMCRNet
from cmse_speechbrain.mixing import OnTheFlyMixer
from cmse_speechbrain.peers import MetricGANPlusGenerator
from conftest import HPARAMS, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import ablation  # noqa: E402


class Options:
    epochs, segment, batch_size = 1, 2.0, 4


@pytest.mark.parametrize("variant,model_class,use_cm,cr_on,waveform_loss", [
    ("baseline", CMCRNet, False, False, True),
    ("cm", CMCRNet, True, False, True),
    ("cr", CMCRNet, False, True, True),
    ("full", CMCRNet, True, True, True),
    ("metricgan", MetricGANPlusGenerator, False, False, False),
])
def test_variant_overrides(tmp_path, variant, model_class, use_cm, cr_on, waveform_loss):
    overrides = ablation.run_overrides(Options, variant, 0, tmp_path / "data", tmp_path / "out")
    with open(HPARAMS, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides, overrides_must_match=False)
    model = hparams["modules"]["model"]
    assert type(model) is model_class
    assert hparams["checkpointer"].recoverables["model"] is model
    if model_class is CMCRNet:
        assert (model.cm is not None) == use_cm
    assert (hparams["cr_weight"] > 0) == cr_on
    assert (hparams["recon_loss"].waveform_weight > 0) == waveform_loss
    assert isinstance(hparams["mixer"], OnTheFlyMixer)
    assert hparams["mixer"].add_noise.snr_low == 0 and hparams["mixer"].add_noise.snr_high == 15
    assert set(hparams["test_annotations"]) == {"synthetic", "voicebank"}


def test_splits_are_disjoint():
    shared = ROOT.parent / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("../shared/data is not on this machine")
    split = ablation.split_data(shared)
    speakers = {k: {p.name.split("-")[0].split("_")[0] for p in split[k]}
                for k in ["train_clean", "valid_clean", "test_clean"]}
    assert not speakers["train_clean"] & speakers["test_clean"]
    assert not speakers["train_clean"] & speakers["valid_clean"]
    assert not {p.name for p in split["train_noise"]} & {p.name for p in split["test_noise"]}
    assert len(split["test_noise"]) == len(ablation.TEST_NOISES)
    assert not {"p232", "p257"} & speakers["train_clean"]
