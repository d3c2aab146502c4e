#!/usr/bin/env python3
"""Rebuilds the shipped mini VoiceBank-DEMAND subset from the source audio.

This is how the folder next to this script was made (provenance); users do
not need to run it. Sources (see README.md here): real VoiceBank-DEMAND
pairs (train speaker p287, test speakers p232 and p257), clean VCTK read
speech (p225-p228 at 16 kHz, p234 at 48 kHz) mixed with real noise
recordings at VoiceBank's SNRs: training 0/5/10/15 dB, validation
2.5/7.5/12.5/17.5 dB, with training and validation noise files disjoint.

Usage: python make_mini_voicebank.py SOURCE_DATA_DIR [OUT_DIR]
"""

import pathlib
import sys

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

TRAIN_SNRS = [0.0, 5.0, 10.0, 15.0]
VALID_SNRS = [2.5, 7.5, 12.5, 17.5]
TRAIN_NOISES = [
    "noise/doing_the_dishes.wav",
    "noise/exercise_bike.wav",
    "noise/running_tap.wav",
    "noise/noise1.wav",
    "noise/noise4.wav",
]
TRAIN_NOISES_48K = ["noise_ch/ch08_sm001.wav", "noise_ch/ch08_sm002.wav"]
VALID_NOISES = ["noise/dude_miaowing.wav", "noise/noise5.wav"]


def read(path, rate=None):
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate is not None and sr != rate:
        audio = AF.resample(torch.from_numpy(audio), sr, rate).numpy()
        sr = rate
    return audio, sr


def mix(clean, noise, snr_db, rng):
    if len(noise) < len(clean):
        noise = np.tile(noise, int(np.ceil(len(clean) / len(noise))))
    start = rng.integers(0, len(noise) - len(clean) + 1)
    noise = noise[start : start + len(clean)]
    clean_power = np.mean(clean**2) + 1e-12
    noise_power = np.mean(noise**2) + 1e-12
    noise = noise * np.sqrt(clean_power / (noise_power * 10 ** (snr_db / 10)))
    noisy = clean + noise
    peak = np.abs(noisy).max()
    scale = 0.95 / peak if peak > 0.95 else 1.0
    return clean * scale, noisy * scale


def write(out, folder, name, audio, rate):
    path = out / folder / f"{name}.flac"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, subtype="PCM_16")


def main(src, out):
    rng = np.random.default_rng(0)
    src = pathlib.Path(src)
    out = pathlib.Path(out)
    jobs = []  # (clean path, noise list, snrs, rate)
    for spk in ["p225", "p227", "p228"]:
        for f in sorted((src / "vctk_extra/16k").glob(f"{spk}_*.wav"))[:5]:
            jobs.append((f, TRAIN_NOISES, TRAIN_SNRS, 16000, "train"))
    for f in sorted((src / "vctk_p234").glob("p234_*.wav"))[:2]:
        jobs.append((f, TRAIN_NOISES_48K, TRAIN_SNRS, 48000, "train"))
    for f in sorted((src / "vctk_extra/16k").glob("p226_*.wav"))[:4]:
        jobs.append((f, VALID_NOISES, VALID_SNRS, 16000, "train"))
    for i, (clean_path, noises, snrs, rate, split) in enumerate(jobs):
        clean, _ = read(clean_path, rate)
        noise, _ = read(src / noises[i % len(noises)], rate)
        clean, noisy = mix(clean, noise, snrs[i % len(snrs)], rng)
        write(out, "clean_trainset_28spk_wav", clean_path.stem, clean, rate)
        write(out, "noisy_trainset_28spk_wav", clean_path.stem, noisy, rate)
    for f in sorted((src / "voicebank_demand/clean").glob("p287_*.wav")):
        for kind in ["clean", "noisy"]:
            audio, rate = read(src / "voicebank_demand" / kind / f.name)
            write(out, f"{kind}_trainset_28spk_wav", f.stem, audio, rate)
    test = sorted((src / "voicebank_demand_test/clean").glob("*.wav"))
    test = [f for f in test if f.stem.startswith("p232")][:8] + [
        f for f in test if f.stem.startswith("p257")
    ][:8]
    for f in test:
        for kind in ["clean", "noisy"]:
            audio, rate = read(src / "voicebank_demand_test" / kind / f.name)
            write(out, f"{kind}_testset_wav", f.stem, audio, rate)


if __name__ == "__main__":
    here = pathlib.Path(__file__).resolve().parent
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else here)
