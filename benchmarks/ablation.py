#!/usr/bin/env python3
"""Ablation study: does each part of CMCR-Net help, at an equal training budget?

Trains, with the same data, steps, seeds and learning-rate schedule, through
the RealMix recipe (``recipes/RealMix/train.py hparams/cmse_realmix.yaml``,
real speech x real noise mixed on the fly, speaker- and noise-disjoint
splits; see ``recipes/RealMix/realmix_prepare.py``):

* ``baseline``: CMCR-Net without the collaboration module, without CR
  (``use_cm=False cm_share=0 cr_share=0``);
* ``cm``: + collaboration module and its stream contrast (``cr_share=0``);
* ``cr``: + contrastive regularization (``use_cm=False cm_share=0``);
* ``full``: CMCR-Net (the YAML as is);
* ``metricgan``: SpeechBrain's MetricGAN+ generator
  (:class:`cmse_speechbrain.peers.MetricGANPlusGenerator`) with the same
  objective (reconstruction + CR).

Each run is its own recipe process. The fixed validation and test sets are
prepared once and shared. The best checkpoint of each run (validation
quality) is tested on the 33 real VoiceBank-DEMAND pairs, the synthetic
mixtures of unseen speakers x unseen noise files, and the 3 DNS pairs.

Writes to ``--out`` (default ``reports/ablation``): ``runs.csv`` (one row per
run and test set), ``utterances.csv`` (per utterance), ``ablation.md`` (means
over seeds, and paired differences with 95 % bootstrap intervals over seeds
and utterances), ``valid_curves.png``.

Usage::

    python benchmarks/ablation.py --variants baseline full --seeds 0 1 2 --steps 400

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import csv
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
HPARAMS = ROOT / "hparams" / "cmse_realmix.yaml"
VARIANTS = {
    "baseline": ["--use_cm=False", "--cm_share=0.0", "--cr_share=0.0"],
    "cm": ["--cr_share=0.0"],
    "cr": ["--use_cm=False", "--cm_share=0.0"],
    "full": [],
    "metricgan": ["--model=!new:cmse_speechbrain.peers.MetricGANPlusGenerator", "--cm_share=0.0"],
}
SIZES = {  # "small": a smaller network for every CMCR-Net variant, to fit a CPU budget
    "small": ["--model_hparams={channels: [8, 16, 32, 64, 128]}", "--d_model=64"],
    "full": [],
}
TEST_SETS = ["voicebank", "synthetic", "dns"]
METRICS = ["pesq", "stoi"]


def run_arguments(args, variant, seed, folder):
    """The recipe command line of one run."""
    epochs = max(1, args.steps // args.steps_per_epoch)
    command = [
        sys.executable, str(ROOT / "recipes/RealMix/train.py"), str(HPARAMS),
        f"--output_folder={folder}", f"--data_folder={args.data}", f"--seed={seed}",
        f"--number_of_epochs={epochs}", f"--train_steps_per_epoch={args.steps_per_epoch}",
        f"--batch_size={args.batch_size}", f"--train_segment_seconds={args.segment}",
        f"--warmup_steps={args.warmup}", f"--aux_start_steps={args.warmup}",
        f"--aux_ramp_steps={args.warmup}", "--num_workers=0", "--pesq_n_jobs=1",
        "--real_annotation=null", "--device=cpu", "--init_from=null",
    ]
    size = [] if variant == "metricgan" else SIZES[args.size]
    return command + size + VARIANTS[variant]


def prepare(args, shared):
    """Prepares the fixed sets once (in ``shared``)."""
    sys.path.insert(0, str(ROOT / "recipes/RealMix"))
    from realmix_prepare import prepare_realmix

    prepare_realmix(args.data, shared, seed=0)


def finished(args, variant, seed):
    """Whether a run has written its last test summary (then it is not rerun;
    an unfinished run resumes from its checkpoints)."""
    return (args.out / "runs" / f"{variant}_s{seed}" / f"test_summary_{TEST_SETS[-1]}.json").exists()


def launch(args, variant, seed, shared):
    folder = args.out / "runs" / f"{variant}_s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    for item in shared.iterdir():
        if item.is_file():
            shutil.copy(item, folder / item.name)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    log = open(folder / "stdout.log", "w", encoding="utf-8")
    return folder, subprocess.Popen(run_arguments(args, variant, seed, folder), cwd=ROOT,
                                    stdout=log, stderr=subprocess.STDOUT, env=env)


def read_run(folder):
    """Per-utterance test scores and validation curve of a finished run."""
    utterances = []
    for name in TEST_SETS:
        path = folder / f"test_results_{name}.csv"
        if path.exists():
            with open(path, encoding="utf-8") as fin:
                for row in csv.DictReader(fin):
                    utterances.append(dict(row, set=name))
    curve = []
    log = folder / "train_log.txt"
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            match = re.search(r"valid quality: ([0-9.e+-]+)", line)
            if line.startswith("epoch") and match:
                curve.append(float(match.group(1)))
    return utterances, curve


def bootstrap_difference(pairs, resamples=2000, seed=0):
    """Mean and 95 % interval of a paired difference, resampling seeds and,
    within each, utterances. ``pairs``: {seed: [(a, b), ...]} -> b - a.

    Example
    -------
    >>> pairs = {0: [(1.0, 1.5), (2.0, 2.5)], 1: [(1.0, 1.4), (2.0, 2.6)]}
    >>> mean, low, high = bootstrap_difference(pairs, resamples=200)
    >>> round(mean, 2), low <= mean <= high
    (0.5, True)
    """
    rng = random.Random(seed)
    seeds = sorted(pairs)
    mean = sum(b - a for s in seeds for a, b in pairs[s]) / sum(len(pairs[s]) for s in seeds)
    draws = []
    for _ in range(resamples):
        values = []
        for s in (rng.choice(seeds) for _ in seeds):
            rows = pairs[s]
            values += [rows[rng.randrange(len(rows))] for _ in rows]
        draws.append(sum(b - a for a, b in values) / len(values))
    draws.sort()
    return mean, draws[int(0.025 * resamples)], draws[int(0.975 * resamples) - 1]


def report(args, results, elapsed):
    """Writes runs.csv, utterances.csv, ablation.md and valid_curves.png."""
    out = args.out
    rows, utterance_rows = [], []
    for (variant, seed), (utterances, curve) in sorted(results.items()):
        utterance_rows += [dict(u, variant=variant, seed=seed) for u in utterances]
        for name in TEST_SETS:
            subset = [u for u in utterances if u["set"] == name]
            if not subset:
                continue
            row = {"variant": variant, "seed": seed, "set": name, "utterances": len(subset),
                   "minutes": round(elapsed[(variant, seed)] / 60, 1)}
            for metric in METRICS:
                for kind in ["noisy", "enhanced"]:
                    row[f"{kind}_{metric}"] = sum(float(u[f"{kind}_{metric}"]) for u in subset) / len(subset)
            rows.append(row)
    with open(out / "runs.csv", "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "utterances.csv", "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=list(utterance_rows[0]))
        writer.writeheader()
        writer.writerows(utterance_rows)

    variants = list(dict.fromkeys(v for v, _ in results))
    lines = [f"# Ablation at an equal budget ({args.steps} steps of {args.batch_size} x "
             f"{args.segment:g} s, seeds {' '.join(map(str, args.seeds))}, network size "
             f"'{args.size}', CPU)", "",
             "Command: `python benchmarks/ablation.py " + " ".join(sys.argv[1:]) + "`", "",
             "Mean ± standard deviation over seeds. Each seed draws its own validation and "
             "synthetic test mixtures (same speakers and noise files, other segments and "
             "SNRs); variants of one seed share them, so the paired differences below "
             "compare like with like.", ""]
    for name in TEST_SETS:
        lines += [f"## {name}", "", "| system | PESQ-WB | STOI |", "|---|---|---|"]
        noisy = [r for r in rows if r["set"] == name]
        if not noisy:
            continue
        # the synthetic mixtures are drawn with each run's seed: the noisy row is their mean
        noisy_means = [sum(r[f"noisy_{m}"] for r in noisy) / len(noisy) for m in METRICS]
        lines.append("| noisy | " + " | ".join(f"{v:.3f}" for v in noisy_means) + " |")
        for variant in variants:
            mine = [r for r in rows if r["set"] == name and r["variant"] == variant]
            cells = []
            for metric in METRICS:
                values = [r[f"enhanced_{metric}"] for r in mine]
                mean = sum(values) / len(values)
                spread = (sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)) ** 0.5
                cells.append(f"{mean:.3f} ± {spread:.3f}")
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    comparisons = [("baseline", "full"), ("baseline", "cm"), ("baseline", "cr"), ("metricgan", "full")]
    lines += ["## Paired differences (same seed, same utterances), 95 % bootstrap interval", "",
              "| comparison | set | metric | difference | interval |", "|---|---|---|---|---|"]
    for first, second in comparisons:
        if first not in variants or second not in variants:
            continue
        for name in TEST_SETS:
            for metric in METRICS:
                pairs = {}
                for seed in args.seeds:
                    a = {u["id"]: float(u[f"enhanced_{metric}"]) for u in results.get((first, seed), ([], []))[0] if u["set"] == name}
                    b = {u["id"]: float(u[f"enhanced_{metric}"]) for u in results.get((second, seed), ([], []))[0] if u["set"] == name}
                    shared = sorted(set(a) & set(b))
                    if shared:
                        pairs[seed] = [(a[i], b[i]) for i in shared]
                if pairs:
                    mean, low, high = bootstrap_difference(pairs)
                    lines.append(f"| {second} - {first} | {name} | {metric} | {mean:+.3f} | "
                                 f"[{low:+.3f}, {high:+.3f}] |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = dict(zip(variants, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for (variant, seed), (_, curve) in sorted(results.items()):
        steps = [args.steps_per_epoch * (i + 1) for i in range(len(curve))]
        ax.plot(steps, curve, color=colours[variant], alpha=0.8,
                label=variant if seed == args.seeds[0] else None)
    ax.set_xlabel("training steps")
    ax.set_ylabel("validation quality (0.5 PESQ' + 0.5 STOI)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "valid_curves.png", dpi=80)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=["baseline", "full"], choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=400, help="training steps of every run")
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="steps between validations")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment", type=float, default=3.0, help="seconds per training crop")
    parser.add_argument("--warmup", type=int, default=50, help="lr warm-up = CM/CR start (steps)")
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="threads per run")
    parser.add_argument("--data", type=pathlib.Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "reports" / "ablation")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from runs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    shared = args.out / "data"
    todo = [(v, s) for s in args.seeds for v in args.variants if not finished(args, v, s)]
    elapsed_file = args.out / "elapsed.json"
    saved = json.loads(elapsed_file.read_text()) if elapsed_file.exists() else {}
    elapsed = {(k.rsplit("_s", 1)[0], int(k.rsplit("_s", 1)[1])): t for k, t in saved.items()}
    if not args.report_only:
        prepare(args, shared)
        running = {}
        while todo or running:
            while todo and len(running) < args.jobs:
                variant, seed = todo.pop(0)
                folder, process = launch(args, variant, seed, shared)
                running[(variant, seed)] = (folder, process, time.time())
                print(f"started {variant} seed {seed}", flush=True)
            for key, (folder, process, start) in list(running.items()):
                if process.poll() is not None:
                    # a resumed run adds to the minutes of its earlier attempts
                    elapsed[key] = elapsed.get(key, 0.0) + time.time() - start
                    del running[key]
                    status = "done" if process.returncode == 0 else f"FAILED ({process.returncode})"
                    print(f"{key[0]} seed {key[1]}: {status} in {elapsed[key] / 60:.1f} min"
                          f" (log: {folder / 'stdout.log'})", flush=True)
                    elapsed_file.write_text(json.dumps({f"{v}_s{s}": t for (v, s), t in elapsed.items()}))
            time.sleep(5)
    results = {}
    for variant in args.variants:
        for seed in args.seeds:
            folder = args.out / "runs" / f"{variant}_s{seed}"
            if folder.exists():
                results[(variant, seed)] = read_run(folder)
                elapsed.setdefault((variant, seed), float("nan"))
    report(args, results, elapsed)


if __name__ == "__main__":
    main()
