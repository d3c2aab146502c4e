"""Where a model's spectral distortion sits, on the 33 VoiceBank-DEMAND test pairs:
the LLR (the term that moves CSIG and COVL) in speech frames and in pauses, and the
output's level change per frequency band in the speech frames, for model folders.

    python reports/training/spectral_distortion.py --data ../shared/data \
        --model shipped=cmse_speechbrain/pretrained/cmcr-net-real-mix \
        --model candidate=RUN_FOLDER [--threads 1]

Frames are the composite measure's (30 ms, hop 7.5 ms); a frame is speech when the
clean frame is within ``--speech-range`` dB of the file's loudest, a pause when at
least that far below. Band levels: enhanced over clean power in the speech frames
of a 512-point STFT, summed over the files, in dB (0: the band's level is kept).
Prints a Markdown table; ``--json`` writes the numbers too.
"""

import argparse
import json
import pathlib

import numpy as np
import torch

from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.metrics import (
    _frames,
    frame_log_likelihood_ratios,
    log_likelihood_ratio,
)

BANDS_HZ = [(0, 1000), (1000, 2000), (2000, 4000), (4000, 6000), (6000, 8000)]


def frame_classes(clean, sample_rate, speech_range_db):
    """Boolean speech mask over the composite measure's frames of ``clean``."""
    _, frames, _ = _frames(np.asarray(clean, float), sample_rate)
    energy = 10 * np.log10((frames**2).sum(1) + 1e-12)
    return energy >= energy.max() - speech_range_db


def band_powers(signal, speech_range_db, clean):
    """Power per band of ``signal`` in the STFT frames where ``clean`` is speech."""
    window = torch.hann_window(512, dtype=torch.float64)

    def power(x):
        spec = torch.stft(
            torch.as_tensor(x, dtype=torch.float64),
            512,
            128,
            window=window,
            return_complex=True,
        )
        return spec.abs().pow(2).numpy()  # [freq, frames]

    clean_power, signal_power = power(clean), power(signal)
    frame_db = 10 * np.log10(clean_power.sum(0) + 1e-12)
    speech = frame_db >= frame_db.max() - speech_range_db
    freqs = np.linspace(0, 8000, clean_power.shape[0])
    return np.array(
        [
            [
                signal_power[(freqs >= lo) & (freqs < hi)][:, speech].sum(),
                clean_power[(freqs >= lo) & (freqs < hi)][:, speech].sum(),
            ]
            for lo, hi in BANDS_HZ
        ]
    )


def measure(enhancer, pairs, speech_range_db, band_range_db, sample_rate=16000):
    """The figures of one model (``enhancer`` None: the noisy input itself)."""
    llr, speech_llr, pause_llr, bands = [], [], [], 0.0
    for noisy_path, clean_path in pairs:
        # mono float32 at the metric's rate; a bad file is named
        noisy = read_audio_checked(noisy_path, sample_rate)
        clean = read_audio_checked(clean_path, sample_rate).numpy()
        if enhancer is None:
            enhanced = noisy.numpy()
        else:
            with torch.no_grad():
                enhanced = enhancer.enhance_batch(noisy[None])[0].numpy()
        length = min(len(clean), len(enhanced))
        clean, enhanced = clean[:length], enhanced[:length]
        frames = frame_log_likelihood_ratios(clean, enhanced, sample_rate)
        speech = frame_classes(clean, sample_rate, speech_range_db)[: len(frames)]
        llr.append(log_likelihood_ratio(clean, enhanced, sample_rate))
        speech_llr.append(frames[speech].mean())
        if (~speech).any():
            pause_llr.append(frames[~speech].mean())
        bands = bands + band_powers(enhanced, band_range_db, clean)
    return {
        "llr": float(np.mean(llr)),
        "llr_speech": float(np.mean(speech_llr)),
        "llr_pause": float(np.mean(pause_llr)) if pause_llr else float("nan"),
        "files_with_pauses": len(pause_llr),
        "band_level_db": {
            f"{lo}-{hi}": float(10 * np.log10(p[0] / p[1]))
            for (lo, hi), p in zip(BANDS_HZ, bands)
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--speech-range", type=float, default=40.0)
    parser.add_argument("--band-range", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from cmse_speechbrain.inference import EnhanceCMCR

    folder = pathlib.Path(args.data) / "voicebank_demand_test"
    pairs = [
        (folder / "noisy" / p.name, p) for p in sorted((folder / "clean").glob("*.wav"))
    ]
    results = {"noisy": measure(None, pairs, args.speech_range, args.band_range)}
    for spec in args.model:
        name, path = spec.split("=", 1)
        enhancer = EnhanceCMCR.from_hparams(source=str(pathlib.Path(path).resolve()))
        results[name] = measure(enhancer, pairs, args.speech_range, args.band_range)
    bands = [f"{lo}-{hi}" for lo, hi in BANDS_HZ]
    print(f"{len(pairs)} pairs; band levels in the speech frames (dB, 0 = kept)\n")
    print(
        "| system | LLR | LLR speech | LLR pauses | "
        + " | ".join(f"{b} Hz" for b in bands)
        + " |"
    )
    print("|---" * (4 + len(bands)) + "|")
    for name, r in results.items():
        print(
            f"| {name} | {r['llr']:.3f} | {r['llr_speech']:.3f} "
            f"| {r['llr_pause']:.3f} | "
            + " | ".join(f"{r['band_level_db'][b]:+.1f}" for b in bands)
            + " |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
