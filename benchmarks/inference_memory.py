#!/usr/bin/env python3
"""Peak memory and real-time factor of EnhanceCMCR against input length.

Each length runs in a fresh process (so peak RSS is that length's alone):
real noisy speech from the shipped test set, concatenated to the length,
enhanced with the model folder's default chunking. Prints a table and
writes ``benchmarks/results/inference_memory.csv``.

    python benchmarks/inference_memory.py [--source MODEL_DIR] [--threads 2]
        [--seconds 30 600]
"""

import argparse
import csv
import json
import pathlib

import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time, pathlib, torch
from cmse_speechbrain.inference import EnhanceCMCR
from cmse_speechbrain.dataio import read_audio_checked
source, seconds, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
enhancer = EnhanceCMCR.from_hparams(source=source)
files = sorted(pathlib.Path(sys.argv[4]).glob("*.flac"))
speech = torch.cat([read_audio_checked(f) for f in files])
n = int(seconds * enhancer.sample_rate)
noisy = speech.repeat(n // speech.numel() + 1)[:n]
enhancer.enhance_batch(noisy[:16000])  # warm-up
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
enhanced = enhancer.enhance_batch(noisy)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "threads": threads, "rtf": elapsed / seconds,
                  "peak_rss_mb": peak / 1024, "before_mb": base / 1024}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 600.0])
    args = parser.parse_args()
    from cmse_speechbrain.inference import shipped_model_folder

    source = args.source or str(shipped_model_folder())
    audio = ROOT / "recipes/VoiceBank/mini_voicebank/noisy_testset_wav"
    rows = []
    for seconds in args.seconds:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, source, str(seconds), str(args.threads), str(audio)],
            capture_output=True, text=True, check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'input (s)':>10s} {'threads':>8s} {'RTF':>8s} {'peak RSS (MB)':>14s}")
    for row in rows:
        print(f"{row['seconds']:10.0f} {row['threads']:8d} {row['rtf']:8.3f} {row['peak_rss_mb']:14.0f}")
    print(f"peak RSS ratio {rows[-1]['seconds']:.0f} s / {rows[0]['seconds']:.0f} s: "
          f"{rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    with open(results / "inference_memory.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)



if __name__ == "__main__":
    main()
