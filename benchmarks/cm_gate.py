#!/usr/bin/env python3
"""Does the collaboration module split speech from noise? Its gate on real audio.

For a model folder (default: the shipped model), mixes real VoiceBank-DEMAND
test speech (speakers never trained on) with real noise recordings that no
training used (the ASR benchmark's held-out noises) at 0, 10 and 20 dB, and
measures the CM gate (:mod:`cmse_speechbrain.diagnostics`): its correlation
over frames with the clean speech's energy, and its mean per SNR. Writes
``benchmarks/results/cm_gate.json`` and ``cm_gate.png`` (the gate beside the
spectrograms of one utterance).

    python benchmarks/cm_gate.py [--source MODEL_FOLDER] [--data ../shared/data]

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import json
import pathlib

import torch

from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.diagnostics import gate_statistics, plot_gate
from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder

from common import RESULTS, ROOT

NOISES = [
    "noise/dude_miaowing.wav",
    "noise/noise5.wav",
    "noise_ch/ch03_sm001.wav",
    "noise_ch/ch03_sm002.wav",
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=pathlib.Path, default=shipped_model_folder())
    parser.add_argument(
        "--data", type=pathlib.Path, default=ROOT.parent / "shared" / "data"
    )
    parser.add_argument("--utterances", type=int, default=12)
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = EnhanceCMCR.from_hparams(source=str(args.source)).mods.enhance_model
    clean_files = sorted((args.data / "voicebank_demand_test" / "clean").glob("*.wav"))
    noises = [read_audio_checked(args.data / name) for name in NOISES]
    pairs = [
        (read_audio_checked(path), noises[i % len(noises)])
        for i, path in enumerate(clean_files[: args.utterances])
    ]
    stats = gate_statistics(model, pairs, snrs=(0.0, 5.0, 10.0, 20.0))
    stats.update(source=str(args.source.name), utterances=len(pairs), noises=NOISES)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "cm_gate.json").write_text(json.dumps(stats, indent=1) + "\n")
    plot_gate(
        model,
        pairs[0][0],
        pairs[0][1],
        5.0,
        args.output / "cm_gate.png",
        title=(
            f"CM gate of {args.source.name} on "
            f"{clean_files[0].stem} + {NOISES[0]} (5 dB)"
        ),
    )
    print(
        "correlation of the channel-mean gate with the clean frame energy, per pass:",
        [round(c, 3) for c in stats["speech_correlation"]],
    )
    for snr, means in stats["mean_gate"].items():
        print(f"mean gate at {snr:4.0f} dB, per pass: {[round(m, 3) for m in means]}")
    print(f"wrote {args.output / 'cm_gate.json'} and {args.output / 'cm_gate.png'}")


if __name__ == "__main__":
    main()
