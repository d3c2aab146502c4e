"""Shared fixtures: paths to the shipped real audio and a recipe runner."""

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download in tests

ROOT = pathlib.Path(__file__).resolve().parents[1]
MINI_VOICEBANK = ROOT / "recipes" / "VoiceBank" / "mini_voicebank"
TRAIN_SCRIPT = ROOT / "recipes" / "VoiceBank" / "train.py"
HPARAMS = ROOT / "hparams" / "cmse.yaml"
MINI_DNS = ROOT / "recipes" / "DNS" / "mini_dns"
RECIPES = {  # name: (train script, hparams, shipped data)
    "voicebank": (TRAIN_SCRIPT, HPARAMS, MINI_VOICEBANK),
    "dns": (
        ROOT / "recipes" / "DNS" / "train.py",
        ROOT / "hparams" / "cmse_dns.yaml",
        MINI_DNS,
    ),
}

# A small network with the full structure, to keep tests fast on 2 cores.
TINY_MODEL = [
    "--model_hparams={channels: [4, 8, 8, 16, 16], nhead: 2}",
    "--d_model=16",
    "--init_from=null",  # the shipped weights fit the full-size network only
    "--batch_size=4",
    "--device=cpu",
]


@pytest.fixture
def mini_voicebank():
    """The shipped VoiceBank-style subset of real recordings."""
    return MINI_VOICEBANK


def recipe_command(output_folder, *extra, recipe="voicebank"):
    """A recipe's command line (``voicebank`` or ``dns``) with a tiny model."""
    script, hparams, data = RECIPES[recipe]
    return [
        sys.executable,
        str(script),
        str(hparams),
        f"--output_folder={output_folder}",
        f"--data_folder={data}",
        *TINY_MODEL,
        *extra,
    ]


def run_recipe(output_folder, *extra, timeout=600, recipe="voicebank"):
    """Runs the recipe to the end; fails the test with its output if it fails."""
    result = subprocess.run(
        recipe_command(output_folder, *extra, recipe=recipe),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if result.returncode != 0:
        pytest.fail(f"recipe failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def sha256(path):
    """Content hash, to check that inputs are never modified."""
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory):
    """A from_hparams folder holding a small randomly initialised CMCR-Net."""
    import torch

    from cmse_speechbrain.cmcr_net import CMCRNet
    from cmse_speechbrain.export import inference_yaml

    folder = tmp_path_factory.mktemp("tiny_model")
    torch.manual_seed(0)
    model = CMCRNet(channels=[4, 8, 8, 16, 16], d_model=16, nhead=2)
    (folder / "hyperparams.yaml").write_text(inference_yaml(model))
    torch.save(model.state_dict(), folder / "enhance_model.ckpt")
    return folder


def real_mixture(speech_file, noise_file, snr_db, seconds=4.0):
    """Real speech + real noise (looped) at ``snr_db``: (clean, noisy),
    [1, samples] each."""
    import torch

    from cmse_speechbrain.dataio import read_audio_checked

    clean = read_audio_checked(speech_file)[: int(seconds * 16000)]
    noise = read_audio_checked(noise_file)
    noise = noise.repeat(clean.numel() // noise.numel() + 1)[: clean.numel()]
    noise = noise * torch.sqrt(
        clean.pow(2).mean() / noise.pow(2).mean() / 10 ** (snr_db / 10)
    )
    return clean[None], (clean + noise)[None]


REAL_MIXTURES = [  # real speech x real noise, at 0 and 10 dB
    (
        MINI_VOICEBANK / "clean_trainset_28spk_wav/p225_003.flac",
        MINI_DNS / "noise/noise_noise1.flac",
        0,
    ),
    (
        MINI_VOICEBANK / "clean_trainset_28spk_wav/p227_005.flac",
        MINI_DNS / "noise/noise_exercise_bike.flac",
        10,
    ),
]
