"""Shared helpers of the benchmark scripts: real speech, the machine, output.

Authors
 * cmse-speechbrain contributors 2026
"""

import csv
import os
import pathlib
import platform

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NOISY_TEST = ROOT / "recipes/VoiceBank/mini_voicebank/noisy_testset_wav"

HPARAMS = ROOT / "benchmarks" / "hparams"


def spectral_mask_model():
    """SpeechBrain's spectral-mask VoiceBank network
    (``benchmarks/hparams/spectral_mask.yaml``), untrained."""
    from hyperpyyaml import load_hyperpyyaml

    with open(HPARAMS / "spectral_mask.yaml", encoding="utf-8") as fin:
        return load_hyperpyyaml(fin)["model"]


def ablation_study():
    """The ablation study (``benchmarks/hparams/ablation_variants.yaml``):
    ``variants`` ({name: recipe overrides}, in order) and network ``sizes``."""
    from hyperpyyaml import load_hyperpyyaml

    with open(HPARAMS / "ablation_variants.yaml", encoding="utf-8") as fin:
        return load_hyperpyyaml(fin)


def real_speech(seconds, sample_rate=16000):
    """Real noisy speech (the shipped VoiceBank-DEMAND test set) concatenated
    and repeated to ``seconds``: a [samples] tensor."""
    import torch

    from cmse_speechbrain.dataio import read_audio_checked

    speech = torch.cat(
        [read_audio_checked(f, sample_rate) for f in sorted(NOISY_TEST.glob("*.flac"))]
    )
    samples = int(seconds * sample_rate)
    return speech.repeat(samples // speech.numel() + 1)[:samples]


def machine():
    """One line describing the CPU, the cores and the load."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{model}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, "
        f"load average {load:.2f}"
    )


def write_csv(name, rows):
    """Writes rows (dicts) to benchmarks/results/<name>.csv; returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.csv"
    with open(path, "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def pyplot():
    """matplotlib.pyplot with the Agg backend, or None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
