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

``--long-minutes`` measures files instead, end to end as a user runs them
(issue 29, item 8): one file of real noisy speech per length (LibriSpeech
train-clean-100 utterances from ``../shared/data`` end to end, each mixed
with a real ``noise_extra`` recording at 0-15 dB SNR, seeded; 16 kHz 16-bit
WAV, written block by block into ``--work``), enhanced by ``cmse-enhance
FILE -o DIR`` with the shipped model, with and without ``--spectrogram``, each
in a fresh process whose peak RSS is read with ``os.wait4`` (start-up and
model loading included). ``--code DIR`` runs another checkout of the package
(e.g. the commit before a change) and labels its rows ``--label``; rows are
added to ``benchmarks/results/inference_memory_long.csv`` (replacing those
with the same label, length, flag and threads) and drawn in ``.png``:

    python benchmarks/inference_memory.py --long-minutes 10 60 180 --threads 1
    python benchmarks/inference_memory.py --long-minutes 10 60 --threads 1 \
        --code /tmp/before --label before

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys
import time

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
from cmse_speechbrain.dsp import stft_pair
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
print(json.dumps({"model": name, "params": params, "seconds": seconds,
                  "threads": threads, "rtf": best / seconds, "cpu_rtf": cpu / seconds,
                  "peak_rss_mb": peak / 1024, "rss_before_mb": before / 1024,
                  "load_average": os.getloadavg()[0]}))
"""

PEERS = ["metricgan", "spectral_mask"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--seconds", type=float, nargs="+", default=[1.0, 10.0, 60.0, 600.0]
    )
    parser.add_argument("--models", nargs="+", default=["cmcr_shipped"] + PEERS)
    parser.add_argument(
        "--long-minutes",
        type=float,
        nargs="+",
        default=None,
        help="measure cmse-enhance on files of these lengths instead",
    )
    parser.add_argument(
        "--work", default="/tmp/cmse_long_files", help="where the long files go"
    )
    parser.add_argument(
        "--data", default=str(DATA), help="the shared real audio (see its README)"
    )
    parser.add_argument(
        "--code",
        default=None,
        help="a checkout of the package to run instead of this one",
    )
    parser.add_argument(
        "--label", default="streamed", help="the rows' label (--long-minutes)"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.long_minutes:
        return long_files(args)
    rows = []
    for threads in args.threads:
        for seconds in args.seconds:
            for name in args.models:
                out = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        name,
                        str(seconds),
                        str(threads),
                        str(ROOT / "benchmarks"),
                    ],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                    env=child_env(),
                )
                if out.returncode != 0:
                    print(
                        f"{name} {seconds:.0f} s {threads} "
                        f"thr FAILED:\n{out.stderr[-2000:]}"
                    )
                    continue
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                row = rows[-1]
                print(
                    f"  {name:14s} {seconds:6.0f} s {threads} thr  RTF {row['rtf']:.4f}"
                    f"  peak {row['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    print_table(rows)
    print(f"wrote {write_csv('inference_memory', rows)}")
    plot(rows)


DATA = ROOT.parent / "shared" / "data"
DRIVER = "import sys\nfrom cmse_speechbrain import cli\nsys.exit(cli.enhance_main())\n"
LONG_CSV = RESULTS / "inference_memory_long.csv"


def build_long_file(path, minutes, data=DATA, seed=0):
    """Writes ``minutes`` of real noisy speech to ``path`` (16 kHz, 16-bit),
    one utterance at a time; kept if it exists with that length."""
    import soundfile as sf
    import torch

    from cmse_speechbrain.dataio import read_audio_checked
    from cmse_speechbrain.mixing import mix_at_snr

    samples = int(minutes * 60 * 16000)
    if path.is_file() and sf.info(path).frames == samples:
        return path
    speech_files = sorted((data / "librispeech_train_clean_100").glob("*.flac"))
    noise_files = sorted((data / "noise_extra").glob("*/*.flac"))
    if not speech_files or not noise_files:
        raise SystemExit(f"{data}: LibriSpeech or noise_extra missing (see its README)")
    rng = torch.Generator().manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with sf.SoundFile(
        path, "w", samplerate=16000, channels=1, subtype="PCM_16"
    ) as fout:
        while written < samples:
            speech = read_audio_checked(
                speech_files[
                    int(torch.randint(len(speech_files), (1,), generator=rng))
                ],
                16000,
            )
            noise = read_audio_checked(
                noise_files[int(torch.randint(len(noise_files), (1,), generator=rng))],
                16000,
            )
            noise = noise.repeat(speech.numel() // noise.numel() + 1)[: speech.numel()]
            snr, level = (
                torch.rand(1, generator=rng) * 15,
                -35 + torch.rand(1, generator=rng) * 15,
            )
            noisy, _ = mix_at_snr(speech[None], noise[None], snr, level)
            piece = noisy[0, : samples - written].clamp(-1, 1).numpy()
            fout.write(piece)
            written += len(piece)
    return path


def run_measured(command, env, cwd):
    """Runs ``command``; returns its status, wall seconds, peak RSS (MB) and stderr."""
    start = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        child = subprocess.Popen(
            command, stdout=devnull, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
        )
        err = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024, err


def long_files(args):
    import soundfile as sf

    work = pathlib.Path(args.work)
    code = pathlib.Path(args.code).resolve() if args.code else ROOT
    rows = []
    for threads in args.threads:
        env = {
            **child_env(),
            "OMP_NUM_THREADS": str(threads),
            "PYTHONPATH": str(code),
            "HF_HUB_OFFLINE": "1",
        }
        for minutes in args.long_minutes:
            noisy = build_long_file(
                work / f"noisy_{minutes:g}min.wav", minutes, pathlib.Path(args.data)
            )
            for spectrogram in (False, True):
                out = work / "enhanced"
                for old in sorted(out.glob("*")) if out.exists() else []:
                    old.unlink()
                command = [sys.executable, "-c", DRIVER, str(noisy), "-o", str(out)]
                command += ["--spectrogram"] if spectrogram else []
                load = os.getloadavg()[0]
                # not from the source tree: ``python -c`` would import the package
                # there first
                code_, wall, rss, err = run_measured(command, env, cwd=work)
                ok = (
                    code_ == 0
                    and sf.info(out / noisy.name).frames == sf.info(noisy).frames
                )
                if not ok:
                    print(f"{minutes:g} min FAILED ({code_}):\n{err[-2000:]}")
                    continue
                rows.append(
                    {
                        "label": args.label,
                        "minutes": minutes,
                        "spectrogram": spectrogram,
                        "threads": threads,
                        "peak_rss_mb": round(rss, 1),
                        "wall_s": round(wall, 1),
                        "rtf": round(wall / (minutes * 60), 4),
                        "load_average": round((load + os.getloadavg()[0]) / 2, 2),
                    }
                )
                print(
                    f"  {args.label:9s} {minutes:5g} min "
                    f"{'--spectrogram' if spectrogram else '':13s} "
                    f"{threads} thr  peak {rss:7.0f} MB  wall {wall:6.0f} s",
                    flush=True,
                )
    keys = {
        (r["label"], float(r["minutes"]), str(r["spectrogram"]), int(r["threads"]))
        for r in rows
    }
    kept = []
    if LONG_CSV.exists():
        with open(LONG_CSV, newline="", encoding="utf-8") as fin:
            kept = [
                r
                for r in csv.DictReader(fin)
                if (
                    r["label"],
                    float(r["minutes"]),
                    r["spectrogram"],
                    int(r["threads"]),
                )
                not in keys
            ]
    rows = kept + rows
    print(f"wrote {write_csv('inference_memory_long', rows)}")
    print_long_table(rows)
    plot_long(rows)


def print_long_table(rows):
    """Markdown: peak RSS per length, with and without --spectrogram."""
    minutes = sorted({float(r["minutes"]) for r in rows})
    print(
        "\n| code | threads | --spectrogram | "
        + " | ".join(f"{m:g} min" for m in minutes)
        + " |"
    )
    print("|---|---|---|" + "---:|" * len(minutes))
    groups = sorted(
        {(r["label"], int(r["threads"]), str(r["spectrogram"])) for r in rows}
    )
    for label, threads, spectrogram in groups:
        cells = {
            float(r["minutes"]): float(r["peak_rss_mb"])
            for r in rows
            if (r["label"], int(r["threads"]), str(r["spectrogram"]))
            == (label, threads, spectrogram)
        }
        print(
            f"| {label} | {threads} | {'yes' if spectrogram == 'True' else 'no'} | "
            + " | ".join(f"{cells[m]:,.0f} MB" if m in cells else "-" for m in minutes)
            + " |"
        )


def plot_long(rows):
    plt = pyplot()
    if plt is None:
        print("matplotlib missing: no PNG")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted(
        {(r["label"], str(r["spectrogram"]), int(r["threads"])) for r in rows}
    ):
        data = sorted(
            (float(r["minutes"]), float(r["peak_rss_mb"]))
            for r in rows
            if (r["label"], str(r["spectrogram"]), int(r["threads"])) == key
        )
        label = (
            f"{key[0]}{' --spectrogram' if key[1] == 'True' else ''} "
            f"({key[2]} thread{'s' * (key[2] > 1)})"
        )
        ax.plot(
            *zip(*data),
            marker="o",
            linestyle="--" if key[1] == "True" else "-",
            label=label,
        )
    ax.set_xlabel("file length (minutes)")
    ax.set_ylabel("peak RSS of cmse-enhance (MB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("cmse-enhance on one long file of real noisy speech (CPU)")
    fig.tight_layout()
    fig.savefig(RESULTS / "inference_memory_long.png", dpi=90)
    plt.close(fig)
    print(f"wrote {RESULTS / 'inference_memory_long.png'}")


def child_env():
    """Idle OpenMP threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE
    unless set): on a shared machine spinning threads that wait for a
    descheduled partner made 2-thread runs up to 10x slower."""
    return {
        **os.environ,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    }


def print_table(rows):
    index = {(r["model"], r["seconds"], r["threads"]): r for r in rows}
    models = sorted({r["model"] for r in rows}, key=lambda m: (m in PEERS, m))
    print(
        f"\n{'model':14s} {'params':>8s} {'thr':>3s} {'input':>6s} {'RTF':>7s} "
        f"{'CPU-s/s':>7s} {'peak MB':>8s}  RTF ratio to " + " / ".join(PEERS)
    )
    for model in models:
        for (name, seconds, threads), row in sorted(
            index.items(), key=lambda i: (i[0][2], i[0][1])
        ):
            if name != model:
                continue
            ratios = []
            for peer in PEERS:
                other = index.get((peer, seconds, threads))
                ratios.append(f"{row['rtf'] / other['rtf']:.2f}" if other else "-")
            print(
                f"{model:14s} {row['params'] / 1e6:7.2f}M {threads:3d} {seconds:5.0f}s "
                f"{row['rtf']:7.4f} {row['cpu_rtf']:7.4f} {row['peak_rss_mb']:8.0f}  "
                + " / ".join(ratios)
            )


def plot(rows):
    plt = pyplot()
    if plt is None:
        print("matplotlib missing: no PNG")
        return
    threads = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(
        2, len(threads), figsize=(5 * len(threads), 7), squeeze=False
    )
    for column, thread in enumerate(threads):
        for model in sorted({r["model"] for r in rows}):
            data = sorted(
                (r["seconds"], r["rtf"], r["peak_rss_mb"])
                for r in rows
                if r["model"] == model and r["threads"] == thread
            )
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
