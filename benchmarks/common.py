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

# SpeechBrain's spectral-mask VoiceBank recipe network, with the sizes of
# recipes/Voicebank/enhance/spectral_mask/hparams/models/CNNTransformer.yaml
# (speechbrain develop, 2026): a CNN front end and an 8-layer Transformer
# over all frames, predicting a sigmoid magnitude mask.
SPECTRAL_MASK_YAML = """
N_fft: 512
base_channels: 1024
model: !new:speechbrain.lobes.models.transformer.TransformerSE.CNNTransformerSE
    d_model: !ref <base_channels> // 4
    output_size: !ref <N_fft> // 2 + 1
    output_activation: !name:torch.nn.Sigmoid
    activation: !name:torch.nn.LeakyReLU
        negative_slope: 0.01
    dropout: 0.1
    num_layers: 8
    d_ffn: 512
    nhead: 16
    causal: False
    custom_emb_module: !new:speechbrain.nnet.containers.Sequential
        input_shape: [null, null, !ref <N_fft> // 2 + 1]
        conv1: !name:speechbrain.nnet.CNN.Conv1d
            out_channels: !ref <base_channels>
            kernel_size: 3
            padding: same
        norm1: !name:speechbrain.nnet.normalization.LayerNorm
        act1: !new:torch.nn.LeakyReLU
            negative_slope: 0.01
        conv2: !name:speechbrain.nnet.CNN.Conv1d
            out_channels: !ref <base_channels> // 2
            kernel_size: 3
            padding: same
        norm2: !name:speechbrain.nnet.normalization.LayerNorm
        act2: !new:torch.nn.LeakyReLU
            negative_slope: 0.01
        conv3: !name:speechbrain.nnet.CNN.Conv1d
            out_channels: !ref <base_channels> // 8
            kernel_size: 3
            padding: same
        norm3: !name:speechbrain.nnet.normalization.LayerNorm
        act3: !new:torch.nn.LeakyReLU
            negative_slope: 0.01
        conv4: !name:speechbrain.nnet.CNN.Conv1d
            out_channels: !ref <base_channels> // 4
            kernel_size: 3
            padding: same
        norm4: !name:speechbrain.nnet.normalization.LayerNorm
        act4: !new:torch.nn.LeakyReLU
            negative_slope: 0.01
"""


def real_speech(seconds, sample_rate=16000):
    """Real noisy speech (the shipped VoiceBank-DEMAND test set) concatenated
    and repeated to ``seconds``: a [samples] tensor."""
    import torch

    from cmse_speechbrain.dataio import read_audio_checked

    speech = torch.cat([read_audio_checked(f, sample_rate) for f in sorted(NOISY_TEST.glob("*.flac"))])
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
    return f"{model}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, load average {load:.2f}"


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
