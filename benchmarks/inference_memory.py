#!/usr/bin/env python3
"""Real-time factor and peak memory of CMCR-Net and SpeechBrain's own
enhancers, against input length and CPU threads.

Every (model, length, threads) runs in a fresh process, so that its peak
RSS is its own: real noisy speech from the shipped VoiceBank-DEMAND test set,
concatenated to 1 s, 10 s, 60 s and 600 s, enhanced through
``EnhanceCMCR.enhance_batch`` (10 s chunks, 1 s cross-faded overlap: memory
flat in the length) by

* ``cmcr_shipped``: the trained model shipped in the package (3.53 M),
* ``cmcr_default``: CMCR-Net as built by ``hparams/cmse.yaml``, untrained
  (the same configuration as the shipped model; not run by default),
* ``metricgan``: ``speechbrain.lobes.models.MetricGAN.EnhancementGenerator``
  with the MetricGAN recipe's front end
  (:class:`cmse_speechbrain.peers.MetricGANPlusGenerator`, the peer the
  ablation study trains),
* ``spectral_mask``: the network of SpeechBrain's spectral-mask VoiceBank
  recipe (``CNNTransformerSE``, rebuilt with the recipe's sizes, see
  ``benchmarks/hparams/spectral_mask.yaml``), same front end.

Weights do not change the speed: the peers (and cmcr_default) are untrained.
RTF = wall-clock processing time / audio duration (best of a few repeats for
short inputs). Prints a table with CMCR-Net / peer ratios and writes
``benchmarks/results/inference_memory.csv`` and ``.png``.

    python benchmarks/inference_memory.py [--threads 1 2] [--seconds 1 10 60 600]
        [--models cmcr_shipped metricgan spectral_mask]

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import json
import os
import subprocess
import sys

from common import RESULTS, ROOT, machine, pyplot, write_csv

CHILD = r"""
import json, math, os, resource, sys, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[4])
import torch
from common import ROOT, real_speech, spectral_mask_model
from hyperpyyaml import load_hyperpyyaml
from speechbrain.processing.features import spectral_magnitude
from speechbrain.processing.signal_processing import resynthesize
from cmse_speechbrain.cmcr_net import stft_pair
from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder

name, seconds, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)


class SpectralMaskRecipe(torch.nn.Module):
    # SpeechBrain's spectral-mask recipe: log1p magnitude in, mask, noisy phase
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.stft, self.istft = stft_pair(16000, 512, 256)

    def forward(self, wavs, lengths=None):
        feats = torch.log1p(spectral_magnitude(self.stft(wavs), power=0.5))
        spec = torch.expm1(self.net(feats) * feats)
        return resynthesize(spec, wavs, self.stft, self.istft), {}


chunking = {"sample_rate": 16000, "chunk_seconds": 10.0, "chunk_overlap_seconds": 1.0}
if name == "cmcr_shipped":
    enhancer = EnhanceCMCR.from_hparams(source=str(shipped_model_folder()))
else:
    if name == "cmcr_default":
        with open(ROOT / "hparams/cmse.yaml") as fin:
            model = load_hyperpyyaml(fin, {"output_folder": "/tmp/cmse_bench"})["model"]
    elif name == "metricgan":
        from cmse_speechbrain.peers import MetricGANPlusGenerator
        model = MetricGANPlusGenerator()
    elif name == "spectral_mask":
        model = SpectralMaskRecipe(spectral_mask_model())
    enhancer = EnhanceCMCR(modules={"enhance_model": model}, hparams=chunking)
enhancer.mods.eval()
params = sum(p.numel() for p in enhancer.mods.enhance_model.parameters())
noisy = real_speech(seconds)
enhancer.enhance_batch(noisy[:16000])  # warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
best, cpu = math.inf, math.inf
for _ in range(max(1, min(5, int(20 // seconds)))):
    start, start_cpu = time.perf_counter(), time.process_time()
    enhanced = enhancer.enhance_batch(noisy)
    best = min(best, time.perf_counter() - start)
    cpu = min(cpu, time.process_time() - start_cpu)
assert enhanced.shape == noisy.shape and torch.isfinite(enhanced).all()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"model": name, "params": params, "seconds": seconds, "threads": threads,
                  "rtf": best / seconds, "cpu_rtf": cpu / seconds,
                  "peak_rss_mb": peak / 1024, "rss_before_mb": before / 1024,
                  "load_average": os.getloadavg()[0]}))
"""

PEERS = ["metricgan", "spectral_mask"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0, 60.0, 600.0])
    parser.add_argument("--models", nargs="+",
                        default=["cmcr_shipped"] + PEERS)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rows = []
    for threads in args.threads:
        for seconds in args.seconds:
            for name in args.models:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, name, str(seconds), str(threads),
                     str(ROOT / "benchmarks")],
                    capture_output=True, text=True, cwd=ROOT, env=child_env(),
                )
                if out.returncode != 0:
                    print(f"{name} {seconds:.0f} s {threads} thr FAILED:\n{out.stderr[-2000:]}")
                    continue
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                row = rows[-1]
                print(f"  {name:14s} {seconds:6.0f} s {threads} thr  RTF {row['rtf']:.4f}"
                      f"  peak {row['peak_rss_mb']:.0f} MB", flush=True)
    print_table(rows)
    print(f"wrote {write_csv('inference_memory', rows)}")
    plot(rows)


def child_env():
    """Idle OpenMP threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE
    unless set): on a shared machine spinning threads that wait for a
    descheduled partner made 2-thread runs up to 10x slower."""
    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def print_table(rows):
    index = {(r["model"], r["seconds"], r["threads"]): r for r in rows}
    models = sorted({r["model"] for r in rows}, key=lambda m: (m in PEERS, m))
    print(f"\n{'model':14s} {'params':>8s} {'thr':>3s} {'input':>6s} {'RTF':>7s} "
          f"{'CPU-s/s':>7s} {'peak MB':>8s}  RTF ratio to " + " / ".join(PEERS))
    for model in models:
        for (name, seconds, threads), row in sorted(index.items(), key=lambda i: (i[0][2], i[0][1])):
            if name != model:
                continue
            ratios = []
            for peer in PEERS:
                other = index.get((peer, seconds, threads))
                ratios.append(f"{row['rtf'] / other['rtf']:.2f}" if other else "-")
            print(f"{model:14s} {row['params'] / 1e6:7.2f}M {threads:3d} {seconds:5.0f}s "
                  f"{row['rtf']:7.4f} {row['cpu_rtf']:7.4f} {row['peak_rss_mb']:8.0f}  "
                  + " / ".join(ratios))


def plot(rows):
    plt = pyplot()
    if plt is None:
        print("matplotlib missing: no PNG")
        return
    threads = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(2, len(threads), figsize=(5 * len(threads), 7), squeeze=False)
    for column, thread in enumerate(threads):
        for model in sorted({r["model"] for r in rows}):
            data = sorted((r["seconds"], r["rtf"], r["peak_rss_mb"]) for r in rows
                          if r["model"] == model and r["threads"] == thread)
            if not data:
                continue
            x, rtf, rss = zip(*data)
            axes[0][column].plot(x, rtf, marker="o", label=model)
            axes[1][column].plot(x, rss, marker="o", label=model)
        axes[0][column].set_title(f"{thread} CPU thread(s)")
        axes[0][column].set_ylabel("real-time factor")
        axes[1][column].set_ylabel("peak RSS (MB)")
        for ax in axes[:, column]:
            ax.set_xscale("log")
            ax.set_xlabel("input length (s)")
            ax.grid(alpha=0.3)
        axes[0][column].axhline(0.1, color="gray", linestyle="--", linewidth=0.8)
        axes[0][column].legend(fontsize=8)
    fig.suptitle("EnhanceCMCR chunked inference vs SpeechBrain enhancers (CPU)")
    fig.tight_layout()
    fig.savefig(RESULTS / "inference_memory.png", dpi=90)
    plt.close(fig)
    print(f"wrote {RESULTS / 'inference_memory.png'}")


if __name__ == "__main__":
    main()
