#!/usr/bin/env python3
"""Causal streaming CMCR-Net: real-time factor and latency on one CPU thread.

The model of ``hparams/cmse_causal.yaml`` (untrained: weights do not change
the speed) runs through ``StreamingEnhancer`` on real noisy speech (the
shipped VoiceBank-DEMAND test set, concatenated) in blocks of 256 samples
(one hop, 16 ms: what a 32 ms-latency stream does), 1600 (100 ms) and 16000
(1 s), and offline on the whole signal. For comparison the same causal
design at the offline default's size (``hparams/cmse.yaml`` channels and
d_model) runs too. Each row checks that the streamed output equals the
offline causal output.

Algorithmic latency: one STFT window, n_fft = 512 samples = 32 ms (no
look-ahead); the time to process a block adds to it, the block size too.

    python benchmarks/streaming.py [--seconds 20] [--threads 1] [--profile]

Prints a table, writes ``benchmarks/results/streaming.csv`` and ``.png``
(``--profile``: the torch.profiler table of the 16 ms-block run).

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import time
import warnings

import torch
from hyperpyyaml import load_hyperpyyaml

from common import RESULTS, ROOT, machine, pyplot, real_speech, write_csv

warnings.simplefilter("ignore", FutureWarning)


def load_model(size):
    from cmse_speechbrain.cmcr_net import CMCRNet

    with open(ROOT / "hparams/cmse_causal.yaml") as fin:
        config = dict(
            load_hyperpyyaml(fin, {"output_folder": "/tmp/cmse_bench"})["model"].config
        )
    if size == "offline-default size":
        config.update(channels=[16, 32, 64, 128, 256], d_model=128)
    return CMCRNet(**config).eval()


def run_stream(model, audio, block):
    from cmse_speechbrain.streaming import StreamingEnhancer

    streamer = StreamingEnhancer(model)
    for piece in audio[:, : 2 * 16000].split(block, dim=1):  # warm-up
        streamer(piece)
    streamer.flush()
    pieces, times = [], []
    start, start_cpu = time.perf_counter(), time.process_time()
    for piece in audio.split(block, dim=1):
        tick = time.perf_counter()
        pieces.append(streamer(piece))
        times.append(time.perf_counter() - tick)
    pieces.append(streamer.flush())
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return torch.cat(pieces, dim=1), wall, cpu, torch.tensor(times), streamer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, nargs="+", default=[256, 1600, 16000])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {machine()}; {args.threads} "
        f"thread(s), {args.seconds:.0f} s of real speech"
    )
    audio = real_speech(args.seconds)[None]
    rows = []
    for size in ["cmse_causal.yaml", "offline-default size"]:
        model = load_model(size)
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            model(audio[:, :16000])
            start = time.perf_counter()
            offline, _ = model(audio)
            offline_rtf = (time.perf_counter() - start) / args.seconds
        rows.append(
            {
                "model": size,
                "params": params,
                "mode": "offline causal",
                "block_ms": "",
                "rtf": offline_rtf,
                "cpu_rtf": "",
                "block_time_ms_mean": "",
                "block_time_ms_p99": "",
                "latency_ms": 32.0,
                "max_diff_vs_offline": 0.0,
            }
        )
        for block in args.blocks:
            streamed, wall, cpu, times, streamer = run_stream(model, audio, block)
            rows.append(
                {
                    "model": size,
                    "params": params,
                    "mode": "streaming",
                    "block_ms": 1000 * block / 16000,
                    "rtf": wall / args.seconds,
                    "cpu_rtf": cpu / args.seconds,
                    "block_time_ms_mean": 1000 * times.mean().item(),
                    "block_time_ms_p99": 1000 * times.quantile(0.99).item(),
                    "latency_ms": 1000 * streamer.latency_seconds,
                    "max_diff_vs_offline": (streamed - offline).abs().max().item(),
                }
            )
    print(
        f"\n{'model':22s} {'params':>7s} {'mode':15s} {'block':>7s} "
        f"{'RTF':>7s} {'CPU RTF':>7s} {'ms/block':>8s} "
        f"{'p99 ms':>7s} {'latency':>8s} {'|diff|':>8s}"
    )
    for r in rows:
        fmt = lambda v, f: format(v, f) if v != "" else "-"  # noqa: E731
        print(
            f"{r['model']:22s} {r['params'] / 1e6:6.2f}M {r['mode']:15s} "
            f"{fmt(r['block_ms'], '5.0f'):>5s}{'ms' if r['block_ms'] != '' else '  '} "
            f"{r['rtf']:7.3f} {fmt(r['cpu_rtf'], '7.3f')} "
            f"{fmt(r['block_time_ms_mean'], '8.2f')} "
            f"{fmt(r['block_time_ms_p99'], '7.2f')} {r['latency_ms']:6.0f}ms "
            f"{r['max_diff_vs_offline']:8.1e}"
        )
    print("targets: algorithmic latency <= 32 ms, RTF <= 0.3 on one thread")
    print(f"wrote {write_csv('streaming', rows)}")
    plot(rows)
    if args.profile:
        profile(load_model("cmse_causal.yaml"), audio[:, : 5 * 16000])


def plot(rows):
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    labels, values, colors = [], [], []
    for r in rows:
        labels.append(
            f"{r['model']}\n{r['mode']} "
            f"{'' if r['block_ms'] == '' else format(r['block_ms'], '.0f') + ' ms'}"
        )
        values.append(r["rtf"])
        colors.append("tab:blue" if r["model"] == "cmse_causal.yaml" else "tab:gray")
    ax.barh(range(len(values)), values, color=colors)
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.axvline(0.3, color="red", linestyle="--", label="target RTF 0.3")
    ax.set_xlabel("real-time factor (1 CPU thread)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "streaming.png", dpi=90)
    plt.close(fig)
    print(f"wrote {RESULTS / 'streaming.png'}")


def profile(model, audio):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from cmse_speechbrain.streaming import StreamingEnhancer

    streamer = StreamingEnhancer(model)
    for piece in audio.split(256, dim=1):
        streamer(piece)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for piece in audio.split(256, dim=1):
            streamer(piece)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
