#!/usr/bin/env python3
"""Training throughput of CMCR-Net's ablation variants: seconds of audio
trained per second of wall time, on CPU.

One optimiser step = forward, the recipe's objective module
(``cmse_speechbrain.losses.CMCRObjective``, as ``CMSEBrain`` calls it:
reconstruction, CM stream contrast, CR; the gradient-share measurement that
runs every ``rebalance_interval`` steps is left out), backward and Adam, on a batch
of 8 random 4 s crops of real VoiceBank-DEMAND training pairs (the shipped
subset), as ``hparams/cmse.yaml`` trains (batch_size 8,
train_segment_seconds 4). The variants use the ablation flags of docs/training.md.

Before / after: each step is timed with the objective as it is
(``CMCRObjective``: one frozen pass for the CR references and the CM
targets, the CM loss in the stream space) and as it was computed before
(``reference_objective.py``: a frozen pass per signal, the read-out applied
to the streams); the same loss and gradients. The two alternate step by
step in one process, so that the load of a shared machine hits both alike;
the table gives the median of each and their ratio.

    python benchmarks/training_throughput.py [--threads 2] [--steps 6] \
        [--yaml cmse.yaml] [--variants full ...]

Prints a table, writes ``benchmarks/results/training_throughput.csv`` and
``.png``.

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import statistics
import time
import warnings

import torch
from hyperpyyaml import load_hyperpyyaml

from common import RESULTS, ROOT, ablation_study, machine, pyplot, write_csv
from reference_objective import reference_objective

warnings.simplefilter("ignore")
VARIANTS = {  # the ablation's overrides (benchmarks/hparams/ablation_variants.yaml)
    label: ablation_study()["variants"][name]
    for label, name in [
        ("baseline", "baseline"),
        ("+CM", "cm"),
        ("+CR", "cr"),
        ("full", "full"),
    ]
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
        pair = [
            read_audio_checked(folder / sub / name)
            for sub in ["noisy_trainset_28spk_wav", "clean_trainset_28spk_wav"]
        ]
        pair = [p.repeat(crop // p.numel() + 1) for p in pair]  # short files loop
        start = int(
            torch.randint(0, pair[0].numel() - crop + 1, (1,), generator=generator)
        )
        noisy.append(pair[0][start : start + crop])
        clean.append(pair[1][start : start + crop])
    return torch.stack(noisy), torch.stack(clean)


def timed_step(model, objective, optimizer, noisy, clean, lengths, compute):
    """One optimiser step with ``compute`` as the objective: seconds, loss."""
    start = time.perf_counter()
    enhanced, aux = model(noisy, lengths)
    loss, _ = compute(enhanced, clean, noisy, lengths, aux["streams"])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start, float(loss.detach())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--steps", type=int, default=6, help="timed steps of each implementation"
    )
    parser.add_argument("--yaml", default="cmse.yaml")
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS)
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; {args.threads} thread(s)")
    rows = []
    for variant in args.variants:
        overrides = VARIANTS[variant]
        with open(ROOT / "hparams" / args.yaml) as fin:
            hparams = load_hyperpyyaml(
                fin,
                {
                    "output_folder": "/tmp/cmse_bench",
                    "init_from": None,
                    "aux_start_steps": 0,
                    **overrides,
                },
            )
        model = hparams["model"].train()
        objective = hparams["objective"].train()
        optimizer = hparams["opt_class"](
            list(model.parameters()) + list(objective.parameters())
        )
        noisy, clean = real_batch(
            hparams["batch_size"], hparams["train_segment_seconds"]
        )
        lengths = torch.ones(noisy.shape[0])
        # warm-up step (and the first measurement of the auxiliary weights)
        enhanced, aux = model(noisy, lengths)
        loss, terms = objective(enhanced, clean, noisy, lengths, aux["streams"])
        if objective.needs_rebalance():
            objective.rebalance(terms, model.parameters())
        # both implementations on the same outputs, the weights measured
        with torch.no_grad():
            objective.eval()
            before, after = (
                float(compute(enhanced, clean, noisy, lengths, aux["streams"])[0])
                for compute in [
                    lambda *a: reference_objective(objective, *a),
                    objective,
                ]
            )
            objective.train()
        loss_gap = abs(after - before) / abs(before)
        implementations = {
            "before": lambda *a: reference_objective(objective, *a),
            "after": objective,
        }
        times = {name: [] for name in implementations}
        # alternating, so that the machine's load hits both alike
        for _ in range(args.steps):
            for name, compute in implementations.items():
                times[name].append(
                    timed_step(
                        model, objective, optimizer, noisy, clean, lengths, compute
                    )[0]
                )
        audio_seconds = noisy.numel() / hparams["sample_rate"]
        row = {
            "config": args.yaml,
            "variant": variant,
            "threads": args.threads,
            "batch": f"{noisy.shape[0]} x {hparams['train_segment_seconds']:.0f} s",
            "steps": args.steps,
        }
        for name in implementations:
            row[f"step_seconds_{name}"] = statistics.median(times[name])
            row[f"audio_seconds_per_second_{name}"] = (
                audio_seconds / row[f"step_seconds_{name}"]
            )
        row["speedup"] = row["step_seconds_before"] / row["step_seconds_after"]
        row["loss_relative_gap"] = loss_gap
        rows.append(row)
        print(
            f"  {variant:9s} before {row['step_seconds_before']:6.2f} s/step, after "
            f"{row['step_seconds_after']:6.2f} s/step: x{row['speedup']:.2f} "
            f"(loss gap {loss_gap:.1e})",
            flush=True,
        )
    print(
        f"\n{'variant':9s} {'batch':>9s} {'s/step':>15s} "
        f"{'audio s/s':>15s} {'speed-up':>8s}  (CPU, {args.threads} "
        f"threads, {args.yaml}; median of {args.steps} alternating steps)"
    )
    print(f"{'':9s} {'':>9s} {'before':>7s} {'after':>7s} {'before':>7s} {'after':>7s}")
    for r in rows:
        print(
            f"{r['variant']:9s} {r['batch']:>9s} "
            f"{r['step_seconds_before']:7.2f} {r['step_seconds_after']:7.2f} "
            f"{r['audio_seconds_per_second_before']:7.1f} "
            f"{r['audio_seconds_per_second_after']:7.1f} {r['speedup']:7.2f}x"
        )
    print(f"wrote {write_csv('training_throughput', rows)}")
    plt = pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(5.5, 3))
        x = range(len(rows))
        for offset, name in [(-0.2, "before"), (0.2, "after")]:
            ax.bar(
                [i + offset for i in x],
                [r[f"audio_seconds_per_second_{name}"] for r in rows],
                width=0.4,
                label=name,
            )
        ax.set_xticks(list(x), [r["variant"] for r in rows])
        ax.set_ylabel("seconds of audio / second")
        ax.set_title(f"training throughput, CPU {args.threads} threads")
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "training_throughput.png", dpi=90)
        plt.close(fig)
        print(f"wrote {RESULTS / 'training_throughput.png'}")


if __name__ == "__main__":
    main()
