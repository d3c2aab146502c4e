"""The ablation study's variants build the networks and objectives they claim,
and the RealMix split keeps speakers and noise files apart."""

import argparse
import sys

import pytest
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from cmse_speechbrain.cmcr_net import CMCRNet
from cmse_speechbrain.distillmos_encoder import (
    default_weights_path as distillmos_weights_path,
)
from cmse_speechbrain.inference import shipped_model_folder
from cmse_speechbrain.mixing import OnTheFlyMixer
from cmse_speechbrain.peers import MetricGANPlusGenerator
from cmse_speechbrain.speaker_encoder import default_weights_path

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "recipes" / "RealMix"))
import ablation  # noqa: E402
from realmix_prepare import split_files  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.parametrize(
    "variant,model_class,use_cm,cm_on,cr_on",
    [
        ("baseline", CMCRNet, False, False, False),
        ("cm", CMCRNet, True, True, False),
        ("cr", CMCRNet, False, False, True),
        ("full", CMCRNet, True, True, True),
        ("control", CMCRNet, False, False, False),
        ("metricgan", MetricGANPlusGenerator, False, False, True),
        ("cr_speaker", CMCRNet, False, False, True),
        ("cr_distillmos", CMCRNet, False, False, True),
        ("cr_curricular", CMCRNet, False, False, True),
        ("full_distillmos", CMCRNet, True, True, True),
    ],
)
def test_variant_overrides(
    tmp_path, monkeypatch, variant, model_class, use_cm, cm_on, cr_on
):
    weights = {
        "cr_speaker": default_weights_path,
        "cr_distillmos": distillmos_weights_path,
        "full_distillmos": distillmos_weights_path,
    }.get(variant)
    if weights is not None:
        try:
            weights()
        except FileNotFoundError as error:
            pytest.skip(str(error))
    # curricular CR's hard negative: a finished run's exported model (here the
    # shipped one)
    hard_negative_runs = []
    monkeypatch.setattr(
        ablation,
        "hard_negative_folder",
        lambda args, source, seed: (
            hard_negative_runs.append((source, seed)) or shipped_model_folder()
        ),
    )
    args = argparse.Namespace(
        steps=200,
        steps_per_epoch=100,
        batch_size=4,
        segment=2.0,
        warmup=10,
        size="small",
        data=tmp_path,
    )
    command = ablation.run_arguments(args, variant, 0, tmp_path / "run")
    _, _, overrides = sb.parse_arguments(command[2:])
    with open(ablation.HPARAMS, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    model = hparams["modules"]["model"]
    assert type(model) is model_class
    assert hparams["checkpointer"].recoverables["model"] is model
    if model_class is CMCRNet:
        assert (model.cm is not None) == use_cm
        assert model.config["channels"] == [
            8,
            16,
            32,
            64,
            128,
        ]  # the same small size for all
        assert (model.control is not None) == (variant == "control")
    representation = type(
        hparams["objective"].contrastive_regularization.representation
    ).__name__
    expected = {
        "cr_speaker": "SpeakerEncoderRepresentation",
        "cr_distillmos": "DistillMOSRepresentation",
        "full_distillmos": "DistillMOSRepresentation",
    }.get(variant, "RandomConvRepresentation")
    assert representation == expected
    objective = hparams["objective"]
    curricular = objective.curricular_negative
    assert curricular.active == (variant == "cr_curricular")
    assert hard_negative_runs == (
        [("baseline", 0)] if variant == "cr_curricular" else []
    )
    if variant == "cr_curricular":
        assert curricular.weight(10_000) == 0.25 and curricular.weight(0) == 0.0
    assert (objective.shares["cm"] > 0) == cm_on and (
        objective.shares["cr"] > 0
    ) == cr_on
    assert hparams["number_of_epochs"] == 2 and hparams["init_from"] is None
    # DNSMOS of the real recordings is reported
    assert hparams["real_annotation"] is not None
    assert isinstance(hparams["mixer"], OnTheFlyMixer)


def test_realmix_split_is_disjoint():
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not on this machine")
    split = split_files(SHARED)

    def speaker(path):
        return path.name.split("-")[0].split("_")[0]

    speakers = {
        k: {speaker(p) for p in split[k]}
        for k in ["train_speech", "valid_speech", "test_speech"]
    }
    assert not speakers["train_speech"] & speakers["test_speech"]
    assert not speakers["train_speech"] & speakers["valid_speech"]
    assert not speakers["valid_speech"] & speakers["test_speech"]
    noises = {
        k: {str(p) for p in split[k]}
        for k in ["train_noise", "valid_noise", "test_noise"]
    }
    assert not noises["train_noise"] & noises["test_noise"]
    assert not noises["train_noise"] & noises["valid_noise"]
    # the VoiceBank-DEMAND test speakers and the ASR benchmark's speech and noise
    # stay out
    assert not {"p232", "p257"} & speakers["train_speech"]
    trained = {str(p) for p in split["train_speech"] + split["train_noise"]}
    assert not any(
        name in path
        for path in trained
        for name in [
            "asr_samples",
            "transcribed",
            "ljspeech",
            "cmu_arctic",
            "dude_miaowing",
            "noise5",
            "ch03_sm00",
        ]
    )
    assert len(split["valid_speech"]) * 2 + len(split["valid_pairs"]) >= 40


def test_control_matches_the_cm_in_parameters():
    """The self-attention control has the CM's capacity (within 2 %)."""
    args = argparse.Namespace(size="small")
    count = {
        v: sum(p.numel() for p in ablation.build_model(args, v).parameters())
        for v in ["baseline", "cm", "control"]
    }
    cm, control = count["cm"] - count["baseline"], count["control"] - count["baseline"]
    assert abs(control - cm) / cm < 0.02
