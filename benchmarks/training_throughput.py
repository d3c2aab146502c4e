#!/usr/bin/env python3
"""Training throughput of CMCR-Net's ablation variants: seconds of audio
trained per second of wall time, on CPU.

One optimiser step = forward, the recipe's objective module
(``cmse_speechbrain.losses.CMCRObjective``, as ``CMSEBrain`` calls it:
reconstruction, CM stream contrast, CR; the gradient-share measurement that
runs every ``rebalance_interval`` steps is left out), backward and Adam, on a batch
of 8 random 4 s crops of real VoiceBank-DEMAND training pairs (the shipped
subset), as ``hparams/cmse.yaml`` trains (batch_size 8,
train_segment_seconds 4). The variants use the README's ablation flags.

    python benchmarks/training_throughput.py [--threads 2] [--steps 4] [--yaml cmse.yaml]

Prints a table, writes ``benchmarks/results/training_throughput.csv`` and
``.png``.

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import time
import warnings

import torch
from hyperpyyaml import load_hyperpyyaml

from common import RESULTS, ROOT, ablation_study, machine, pyplot, write_csv

warnings.simplefilter("ignore")
VARIANTS = {  # the ablation's overrides (benchmarks/hparams/ablation_variants.yaml)
    label: ablation_study()["variants"][name]
    for label, name in [("baseline", "baseline"), ("+CM", "cm"), ("+CR", "cr"), ("full", "full")]
}


def real_batch(batch_size, seconds, sample_rate=16000):
    """Random crops of the shipped real training pairs: (noisy, clean)."""
    from cmse_speechbrain.dataio import read_audio_checked

    folder = ROOT / "recipes/VoiceBank/mini_voicebank"
    names = sorted(p.name for p in (folder / "noisy_trainset_28spk_wav").glob("*.flac"))
    generator = torch.Generator().manual_seed(0)
    crop = int(seconds * sample_rate)
    noisy, clean = [], []
    for index in range(batch_size):
        name = names[index % len(names)]
        pair = [read_audio_checked(folder / sub / name) for sub in
                ["noisy_trainset_28spk_wav", "clean_trainset_28spk_wav"]]
        pair = [p.repeat(crop // p.numel() + 1) for p in pair]  # short files loop
        start = int(torch.randint(0, pair[0].numel() - crop + 1, (1,), generator=generator))
        noisy.append(pair[0][start : start + crop])
        clean.append(pair[1][start : start + crop])
    return torch.stack(noisy), torch.stack(clean)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--yaml", default="cmse.yaml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; {args.threads} thread(s)")
    rows = []
    for variant, overrides in VARIANTS.items():
        with open(ROOT / "hparams" / args.yaml) as fin:
            hparams = load_hyperpyyaml(fin, {"output_folder": "/tmp/cmse_bench", "init_from": None,
                                             "aux_start_steps": 0, **overrides})
        model = hparams["model"].train()
        objective = hparams["objective"].train()
        optimizer = hparams["opt_class"](list(model.parameters()) + list(objective.parameters()))
        noisy, clean = real_batch(hparams["batch_size"], hparams["train_segment_seconds"])
        lengths = torch.ones(noisy.shape[0])
        times = []
        for step in range(args.steps + 1):  # the first step warms up
            start = time.perf_counter()
            enhanced, aux = model(noisy, lengths)
            loss, terms = objective(enhanced, clean, noisy, lengths, aux["streams"])
            if step == 0 and objective.needs_rebalance():
                objective.rebalance(terms, model.parameters())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step:
                times.append(time.perf_counter() - start)
        audio_seconds = noisy.numel() / hparams["sample_rate"]
        step_time = sum(times) / len(times)
        rows.append({"config": args.yaml, "variant": variant, "threads": args.threads,
                     "batch": f"{noisy.shape[0]} x {hparams['train_segment_seconds']:.0f} s",
                     "step_seconds": step_time,
                     "audio_seconds_per_second": audio_seconds / step_time})
        print(f"  {variant:9s} {step_time:6.2f} s/step  {audio_seconds / step_time:6.1f} s audio / s", flush=True)
    print(f"\n{'variant':9s} {'batch':>9s} {'s/step':>7s} {'audio s/s':>10s}  (CPU, {args.threads} threads, {args.yaml})")
    for r in rows:
        print(f"{r['variant']:9s} {r['batch']:>9s} {r['step_seconds']:7.2f} {r['audio_seconds_per_second']:10.1f}")
    print(f"wrote {write_csv('training_throughput', rows)}")
    plt = pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar([r["variant"] for r in rows], [r["audio_seconds_per_second"] for r in rows])
        ax.set_ylabel("seconds of audio / second")
        ax.set_title(f"training throughput, CPU {args.threads} threads")
        fig.tight_layout()
        fig.savefig(RESULTS / "training_throughput.png", dpi=90)
        plt.close(fig)
        print(f"wrote {RESULTS / 'training_throughput.png'}")


if __name__ == "__main__":
    main()
