"""CMCR-Net as an ASR front end: gradients, rates, the recipe, the pipeline."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.nnet.losses import ctc_loss
from speechbrain.utils.metric_stats import ErrorRateStats

from cmse_speechbrain.asr import (
    CharCTCModel,
    EnhancedASR,
    EnhancementFrontEnd,
    enhancer_from_folder,
    shipped_enhancer_path,
)
from cmse_speechbrain.dataio import AudioFileError, read_audio_checked
from cmse_speechbrain.inference import EnhanceCMCR
from cmse_speechbrain.recognizers import PocketSphinxASR, normalize_text

from conftest import ROOT

MINI_ASR = ROOT / "recipes" / "VoiceBank" / "ASR" / "mini_asr"
ASR_SCRIPT = ROOT / "recipes" / "VoiceBank" / "ASR" / "train.py"
ASR_HPARAMS = ROOT / "hparams" / "asr_cmse.yaml"
NOISY_TEST = MINI_ASR / "noisy_testset_wav" / "hvd_001.flac"
CLEAN_TEST = MINI_ASR / "clean_testset_wav" / "hvd_001.flac"
TRANSCRIPT = normalize_text((MINI_ASR / "testset_txt" / "hvd_001.txt").read_text())
SMALL_ASR = [
    "--cnn_channels=[4]",
    "--rnn_neurons=16",
    "--dnn_neurons=16",
    "--device=cpu",
]


def shipped_enhancer():
    """The shipped CMCR-Net, built from its folder, weights loaded."""
    model = enhancer_from_folder(shipped_enhancer_path())
    state = torch.load(os.path.join(shipped_enhancer_path(), "enhance_model.ckpt"))
    model.load_state_dict(state)
    return model


def ctc_step(front_end):
    """One CTC loss backward through front end + a tiny recogniser on real speech."""
    tokenizer = CTCTextEncoder()
    tokenizer.insert_blank(index=0)
    tokenizer.update_from_iterable(list(" 'ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    torch.manual_seed(0)
    asr = CharCTCModel(len(tokenizer), cnn_channels=[4], rnn_neurons=16, dnn_neurons=16)
    wav = read_audio_checked(NOISY_TEST, 16000)[:8000].unsqueeze(0)  # "THE BIRCH"
    lens = torch.ones(1)
    tokens = torch.tensor([tokenizer.encode_sequence(list(TRANSCRIPT[:9]))])
    front_end.train()
    asr.train()
    loss = ctc_loss(
        asr(front_end(wav, lens), lens), tokens, lens, torch.ones(1), blank_index=0
    )
    loss.backward()
    return asr


def grads_of(module):
    return [p.grad for p in module.parameters()]


def test_joint_mode_passes_gradients_to_the_enhancer():
    front_end = EnhancementFrontEnd(shipped_enhancer(), freeze=False)
    asr = ctc_step(front_end)
    grads = grads_of(front_end.enhancer)
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert all(g is not None for g in grads_of(asr))
    assert front_end.enhancer.training


def test_frozen_mode_blocks_enhancer_gradients_but_trains_the_mix_weight():
    front_end = EnhancementFrontEnd(
        shipped_enhancer(), freeze=True, mix_weight=0.6, learnable_mix=True
    )
    asr = ctc_step(front_end)
    assert all(g is None for g in grads_of(front_end.enhancer))
    assert not front_end.enhancer.training  # .train() keeps a frozen enhancer in eval
    assert (
        front_end.mix_logit.grad is not None and float(front_end.mix_logit.grad) != 0.0
    )
    assert sum(float(g.abs().sum()) for g in grads_of(asr)) > 0


class RateProbe(torch.nn.Module):
    """An 'enhancer' that records what it receives and halves the signal."""

    config = {"sample_rate": 16000}

    def forward(self, wavs, lengths=None):
        self.seen_samples = wavs.shape[-1]
        return wavs * 0.5, {}


def test_sample_rates_are_converted_in_and_out():
    wav = read_audio_checked(NOISY_TEST, 8000).unsqueeze(0)  # real speech at 8 kHz
    probe = RateProbe()
    front_end = EnhancementFrontEnd(probe, input_sample_rate=8000)
    out = front_end(wav, torch.ones(1))
    assert front_end.model_sample_rate == 16000
    assert probe.seen_samples == 2 * wav.shape[-1]  # resampled to the model's rate
    assert out.shape == wav.shape
    # resampled up and back: the halved signal comes back, bar the band edge
    error = (out - 0.5 * wav).pow(2).sum() / (0.5 * wav).pow(2).sum()
    assert 10 * torch.log10(1 / error) > 25.0

    same_rate = EnhancementFrontEnd(RateProbe(), input_sample_rate=16000)
    wav16 = read_audio_checked(NOISY_TEST, 16000).unsqueeze(0)
    assert torch.equal(same_rate(wav16), 0.5 * wav16)


def test_fixed_mix_weight_mixes_enhanced_and_noisy():
    wav = read_audio_checked(NOISY_TEST, 16000)[:16000].unsqueeze(0)
    enhancer = shipped_enhancer()
    noisy_only = EnhancementFrontEnd(enhancer, mix_weight=0.0)
    assert torch.equal(noisy_only(wav), wav)
    enhanced = EnhancementFrontEnd(enhancer)(wav)
    assert not torch.allclose(enhanced, wav, atol=1e-3)  # the enhancer does act
    half = EnhancementFrontEnd(enhancer, mix_weight=0.5)(wav)
    assert torch.allclose(half, 0.5 * enhanced + 0.5 * wav, atol=1e-5)
    with pytest.raises(ValueError, match="mix_weight"):
        EnhancementFrontEnd(enhancer, mix_weight=1.5)
    with pytest.raises(ValueError, match="learnable_mix"):
        EnhancementFrontEnd(enhancer, learnable_mix=True)


def run_asr_recipe(output_folder, *extra):
    command = [
        sys.executable,
        str(ASR_SCRIPT),
        str(ASR_HPARAMS),
        f"--output_folder={output_folder}",
        *SMALL_ASR,
        "--debug",
        "--debug_persistently",
        *extra,
    ]
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if result.returncode != 0:
        pytest.fail(
            f"ASR recipe failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )


def enhancer_weights_equal_shipped(folder):
    exported = torch.load(folder / "enhancer" / "enhance_model.ckpt")
    shipped = torch.load(os.path.join(shipped_enhancer_path(), "enhance_model.ckpt"))
    return all(torch.equal(exported[k], shipped[k]) for k in shipped)


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("asr") / "frozen"
    run_asr_recipe(out, "--debug_epochs=1")
    return out


def test_recipe_debug_run_trains_tests_and_exports(frozen_run):
    for name in [
        "train_log.txt",
        "log.txt",
        "env.log",
        "hyperparams.yaml",
        "train.py",
        "train.json",
        "valid.json",
        "test.json",
        "wer_test.txt",
    ]:
        assert (frozen_run / name).exists(), name
    log = (frozen_run / "train_log.txt").read_text()
    assert "valid WER" in log and "test WER" in log
    assert "%WER" in (frozen_run / "wer_test.txt").read_text()
    assert list((frozen_run / "save").glob("CKPT+*"))
    # frozen: the exported enhancer is the shipped one, untouched
    assert enhancer_weights_equal_shipped(frozen_run / "pipeline")


def test_exported_pipeline_transcribes_a_real_file(frozen_run, tmp_path):
    from speechbrain.inference.ASR import EncoderASR

    pipeline = EnhancedASR.from_folder(frozen_run / "pipeline")
    assert isinstance(pipeline.asr, EncoderASR)
    assert isinstance(pipeline.enhancer, EnhanceCMCR)
    text = pipeline.transcribe_file(NOISY_TEST)
    assert isinstance(text, str)
    # a stereo 48 kHz copy gives the same words (read, mixed down, resampled)
    wav = read_audio_checked(NOISY_TEST, 48000)
    stereo = tmp_path / "stereo48k.wav"
    import soundfile as sf

    sf.write(stereo, torch.stack([wav, wav], dim=1).numpy(), 48000, subtype="FLOAT")
    assert isinstance(pipeline.transcribe_file(stereo), str)
    bad = tmp_path / "not_audio.wav"
    bad.write_text("hello")
    with pytest.raises(AudioFileError, match="not_audio.wav"):
        pipeline.transcribe_file(bad)


def test_recipe_starts_from_a_trained_recogniser(frozen_run, tmp_path):
    """asr_init_from: at lr 0 the run ends with the weights it started from,
    another run's trained ones (its own seed-0 start would differ from them)."""
    start = frozen_run / "pipeline" / "asr" / "encoder.ckpt"
    out = tmp_path / "lr0"
    run_asr_recipe(
        out,
        f"--asr_init_from={start}",
        "--debug_epochs=1",
        "--debug_batches=1",
        "--lr=0.0",
    )
    kept = torch.load(out / "pipeline" / "asr" / "encoder.ckpt")
    # the weights; batch-norm statistics move in training even at lr 0
    weights = [k for k in kept if "running_" not in k and "num_batches" not in k]
    assert weights and all(torch.equal(torch.load(start)[k], kept[k]) for k in weights)


def test_recipe_joint_mode_fine_tunes_the_enhancer(tmp_path):
    out = tmp_path / "joint"
    run_asr_recipe(
        out,
        "--freeze_frontend=False",
        "--mix_weight=0.5",
        "--learnable_mix=True",
        "--debug_epochs=1",
        "--debug_batches=1",
        "--lr=0.01",
    )
    assert not enhancer_weights_equal_shipped(out / "pipeline")
    import json

    weight = json.loads((out / "pipeline" / "pipeline.json").read_text())["mix_weight"]
    assert 0.0 < weight < 1.0 and weight != 0.5  # learned, moved from its start


def test_prepare_names_a_recording_without_transcript(tmp_path):
    sys.path.insert(0, str(ASR_SCRIPT.parent))
    from voicebank_asr_prepare import prepare_voicebank_asr

    data = tmp_path / "data"
    shutil.copytree(MINI_ASR, data, ignore=shutil.ignore_patterns("*.py"))
    (data / "trainset_28spk_txt" / "spk1_003.txt").unlink()
    with pytest.raises(FileNotFoundError, match="spk1_003"):
        prepare_voicebank_asr(data, tmp_path / "out", valid_speakers=["aew"])


def test_pocketsphinx_behind_the_pipeline_on_real_speech():
    pytest.importorskip("pocketsphinx")
    recogniser = PocketSphinxASR()
    stats = ErrorRateStats()
    hypothesis = EnhancedASR(None, recogniser).transcribe_file(CLEAN_TEST)
    stats.append(["hvd_001"], [hypothesis.split()], [TRANSCRIPT.split()])
    assert stats.summarize("error_rate") <= 25.0, hypothesis  # clean speech: near exact
    enhancer = EnhanceCMCR.from_hparams(source=shipped_enhancer_path())
    enhanced_text = EnhancedASR(enhancer, recogniser).transcribe_file(NOISY_TEST)
    assert enhanced_text == normalize_text(enhanced_text) and enhanced_text
    # a fresh decoder per utterance: the same file twice gives the same words
    assert EnhancedASR(None, recogniser).transcribe_file(CLEAN_TEST) == hypothesis
