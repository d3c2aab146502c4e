#!/usr/bin/env python3
"""Ablation and peer study on real audio at an equal training budget.

Trains, with the same data, steps, seeds and learning-rate schedule:

* ``baseline``: CMCR-Net without the collaboration module and without CR
  (``use_cm=False``, ``cr_weight=0``),
* ``cm``: + collaboration module (``cr_weight=0``),
* ``cr``: + contrastive regularization (``use_cm=False``),
* ``full``: CMCR-Net (``hparams/cmse.yaml`` as is),
* ``metricgan``: SpeechBrain's MetricGAN+ generator architecture
  (:class:`cmse_speechbrain.peers.MetricGANPlusGenerator`) trained with a
  plain spectral loss (compressed magnitude + complex MSE),

for every seed, each run in its own process with one CPU thread, through
the package's ``train_and_test`` (the recipes' sequence) on
``hparams/cmse.yaml`` with overrides. Data, all real recordings from
``../shared/data`` (see its README):

* training: clean speech of 241 LibriSpeech train-clean-100 speakers, 40
  VCTK utterances of p225-p228 and 9 of p234, mixed on the fly with
  SpeechBrain's ``AddNoise`` at 0-15 dB (VoiceBank-DEMAND's training SNRs)
  with 11 noise recordings;
* validation (fixed): 4 other LibriSpeech speakers with the training
  noises at 2.5-17.5 dB;
* ``synthetic`` test (fixed): 6 other LibriSpeech speakers and 9 VCTK
  speakers absent from training, mixed with 5 noise recordings used
  nowhere else at 2.5 / 7.5 / 12.5 / 17.5 dB (VoiceBank-DEMAND's test SNRs);
* ``voicebank`` test: the 33 real VoiceBank-DEMAND test pairs (p232, p257).

Writes to ``--out`` (default ``reports/ablation``): ``runs.csv`` (one row
per run), ``ablation.md`` (mean +- std over seeds: PESQ-WB, STOI, CSIG,
CBAK, COVL, SI-SDR, parameters, training time), ``split.json`` (the files
of each split), ``valid_curves.png`` and ``spectrograms.png``.

Usage::

    python benchmarks/ablation.py                       # all variants, seeds 0 1 2
    python benchmarks/ablation.py --jobs 2 --epochs 4   # two runs at a time

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import csv
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
VARIANTS = {
    "baseline": "use_cm: False\ncr_weight: 0",
    "cm": "cr_weight: 0",
    "cr": "use_cm: False",
    "full": "",
    # a new key: an override of `model` would merge into CMCRNet's arguments
    "metricgan": (
        "peer_model: !new:cmse_speechbrain.peers.MetricGANPlusGenerator\n"
        "    sample_rate: !ref <sample_rate>\n"
        "    n_fft: !ref <n_fft>\n"
        "    hop_length: !ref <hop_length>\n"
        "modules:\n    model: !ref <peer_model>\n"
        "checkpointer:\n    recoverables:\n        model: !ref <peer_model>\n"
        "use_cm: False\ncr_weight: 0\nwaveform_weight: 0\nspectral_weight: 1.0"
    ),
}
LABELS = {
    "baseline": "baseline (no CM, no CR)",
    "cm": "+CM",
    "cr": "+CR",
    "full": "full CMCR-Net (CM + CR)",
    "metricgan": "MetricGAN+ generator (SpeechBrain), spectral loss",
}
TRAIN_SNRS = (0.0, 15.0)
VALID_SNRS = [2.5, 7.5, 12.5, 17.5]
TEST_SNRS = [2.5, 7.5, 12.5, 17.5]
TEST_NOISES = ["dude_miaowing.wav", "running_tap.wav", "ch03_sm003.wav",
               "ch08_sm005.wav", "ch08_sm006.wav"]
METRICS = ["pesq", "stoi", "csig", "cbak", "covl", "si_sdr"]


def split_data(shared):
    """Speaker- and noise-disjoint file lists from ../shared/data."""
    libri = sorted((shared / "librispeech_train_clean_100").glob("*.flac"))
    vctk_16k = sorted((shared / "vctk_extra/16k").glob("*.wav"))
    train_speakers_vctk = {p.name.split("_")[0] for p in vctk_16k} | {"p234"}
    vctk_test = [p for p in sorted((shared / "vctk_extra/48k").glob("*.wav"))
                 if p.name.split("_")[0] not in train_speakers_vctk]
    noises = sorted((shared / "noise").glob("*.wav")) + sorted((shared / "noise_ch").glob("*.wav"))
    test_noises = [p for p in noises if p.name in TEST_NOISES]
    train_noises = [p for p in noises if p.name not in TEST_NOISES]
    return {
        "train_clean": libri[:241] + vctk_16k + sorted((shared / "vctk_p234").glob("*.wav")),
        "valid_clean": libri[241:245],
        "test_clean": libri[245:] + vctk_test,
        "train_noise": train_noises,
        "test_noise": test_noises,
        "voicebank": sorted((shared / "voicebank_demand_test/noisy").glob("*.wav")),
    }


def prepare_data(shared, folder):
    """Writes the manifests, the noise CSV and the fixed valid/test mixtures."""
    import soundfile as sf

    from cmse_speechbrain.dataio import atomic_output
    from cmse_speechbrain.mixing import write_augment_csv, write_fixed_mixtures

    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "manifests.done"
    if done.exists():
        return
    split = split_data(shared)
    assert not {p.stem for p in split["train_clean"]} & {p.stem for p in split["test_clean"]}

    def dump(name, manifest):
        with atomic_output(folder / name) as partial:
            partial.write_text(json.dumps(manifest, indent=1), encoding="utf-8")

    dump("train.json", {
        p.stem: {"clean_wav": str(p), "length": sf.info(str(p)).frames}
        for p in split["train_clean"]
    })
    write_augment_csv(split["train_noise"], folder / "train_noise.csv", folder / "noise_cache")
    dump("valid.json", write_fixed_mixtures(
        split["valid_clean"], split["train_noise"], VALID_SNRS, folder / "valid",
        max_seconds=6.0, seed=1000,
    ))
    dump("test_synthetic.json", write_fixed_mixtures(
        split["test_clean"], split["test_noise"], TEST_SNRS, folder / "test_synthetic",
        max_seconds=8.0, seed=2000,
    ))
    voicebank = {}
    for noisy in split["voicebank"]:
        clean = noisy.parent.parent / "clean" / noisy.name
        voicebank[noisy.stem] = {
            "noisy_wav": str(noisy), "clean_wav": str(clean),
            "length": sf.info(str(noisy)).frames,
        }
    dump("test_voicebank.json", voicebank)
    summary = {k: [p.name for p in v] for k, v in split.items()}
    (folder / "split.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    done.write_text("ok\n")


def run_overrides(args, variant, seed, data, out):
    """YAML overrides of hparams/cmse.yaml for one run."""
    mixer = (
        "mixer: !new:cmse_speechbrain.mixing.OnTheFlyMixer\n"
        "    add_noise: !new:speechbrain.augment.time_domain.AddNoise\n"
        f"        csv_file: {data / 'train_noise.csv'}\n"
        f"        snr_low: {TRAIN_SNRS[0]}\n"
        f"        snr_high: {TRAIN_SNRS[1]}\n"
        "        pad_noise: True\n"
    )
    test_sets = (
        "test_annotations:\n"
        f"    synthetic: {data / 'test_synthetic.json'}\n"
        f"    voicebank: {data / 'test_voicebank.json'}\n"
    )
    common = (
        f"seed: {seed}\n"
        f"output_folder: {out}\n"
        f"data_folder: {data}\n"
        f"train_annotation: {data / 'train.json'}\n"
        f"valid_annotation: {data / 'valid.json'}\n"
        f"number_of_epochs: {args.epochs}\n"
        f"train_segment_seconds: {args.segment}\n"
        f"batch_size: {args.batch_size}\n"
        "ckpt_interval_minutes: 0\n"
        + mixer + test_sets
    )
    return common + VARIANTS[variant] + "\n"


def score_signal(clean, signal, pesq_score=None):
    """PESQ-WB, STOI, CSIG/CBAK/COVL and SI-SDR of one signal."""
    import torch

    from cmse_speechbrain.metrics import composite_scores, si_sdr, stoi_score

    composite = composite_scores(clean, signal, pesq_score=pesq_score)
    return {
        "pesq": composite["pesq"],
        "stoi": stoi_score(torch.from_numpy(signal), torch.from_numpy(clean)),
        "csig": composite["csig"],
        "cbak": composite["cbak"],
        "covl": composite["covl"],
        "si_sdr": si_sdr(clean, signal),
    }


def score_noisy(folder):
    """The noisy inputs' scores, computed once per data folder."""
    from cmse_speechbrain.dataio import read_audio_checked

    path = folder / "noisy_scores.json"
    if path.exists():
        return json.loads(path.read_text())
    result = {}
    for test_name in ["synthetic", "voicebank"]:
        manifest = json.loads((folder / f"test_{test_name}.json").read_text())
        per_utt = [
            score_signal(read_audio_checked(e["clean_wav"]).numpy(),
                         read_audio_checked(e["noisy_wav"]).numpy())
            for e in manifest.values()
        ]
        result[test_name] = {m: statistics.fmean(u[m] for u in per_utt) for m in METRICS}
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def run_one(args):
    """Trains and tests one (variant, seed) in this process."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    from cmse_speechbrain.dataio import read_audio_checked
    from cmse_speechbrain.recipe import train_and_test

    torch.set_num_threads(1)
    variant, seed = args.run_one[0], int(args.run_one[1])
    data = pathlib.Path(args.out).resolve() / "data"
    out = pathlib.Path(args.out).resolve() / "runs" / f"{variant}-{seed}"
    overrides = run_overrides(args, variant, seed, data, out)
    hparams_file = ROOT / "hparams/cmse.yaml"
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides, overrides_must_match=False)
    start = time.time()
    brain = train_and_test(hparams, {"device": "cpu"}, None, str(hparams_file), overrides)
    total_seconds = time.time() - start
    model = brain.modules.model
    row = {
        "variant": variant,
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_minutes": round(total_seconds / 60, 2),
        "checkpoint_epoch": hparams["epoch_counter"].current,
    }
    for test_name in ["synthetic", "voicebank"]:
        manifest = json.loads((data / f"test_{test_name}.json").read_text())
        with open(out / f"test_results_{test_name}.csv", encoding="utf-8") as f:
            brain_pesq = {r["id"]: float(r["enhanced_pesq"]) for r in csv.DictReader(f)}
        scores = {m: [] for m in METRICS}
        for utt_id, entry in manifest.items():
            clean = read_audio_checked(entry["clean_wav"]).numpy()
            enhanced = read_audio_checked(
                out / "enhanced_wavs" / test_name / f"{utt_id}.wav"
            ).numpy()
            for m, value in score_signal(clean, enhanced, brain_pesq[utt_id]).items():
                scores[m].append(value)
        for m in METRICS:
            row[f"{test_name}_{m}"] = statistics.fmean(scores[m])
    # the history recovered with the best checkpoint stops at its epoch:
    # read the whole curve from the train log
    history = [
        {"epoch": int(m.group(1)), "valid_pesq": float(m.group(2))}
        for m in re.finditer(r"epoch: (\d+),.*valid pesq: ([-\d.e+]+)",
                             (out / "train_log.txt").read_text())
    ]
    (out / "result.json").write_text(
        json.dumps({"row": row, "valid_curve": history}, indent=1), encoding="utf-8"
    )


def launch_all(args):
    """Runs every (variant, seed) in subprocesses, ``--jobs`` at a time."""
    out = pathlib.Path(args.out).resolve()
    prepare_data(pathlib.Path(args.shared).resolve(), out / "data")
    score_noisy(out / "data")
    queue = [(v, s) for s in args.seeds for v in args.variants]
    running = []
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    while queue or running:
        while queue and len(running) < args.jobs:
            variant, seed = queue.pop(0)
            if (out / "runs" / f"{variant}-{seed}" / "result.json").exists():
                continue
            log = open(out / f"{variant}-{seed}.log", "w")
            command = [sys.executable, __file__, "--run-one", variant, str(seed),
                       "--out", str(out), "--epochs", str(args.epochs),
                       "--segment", str(args.segment), "--batch-size", str(args.batch_size)]
            print(f"[{time.strftime('%H:%M:%S')}] start {variant} seed {seed}", flush=True)
            running.append((variant, seed, subprocess.Popen(command, stdout=log, stderr=log, env=env)))
        time.sleep(5)
        for item in list(running):
            if item[2].poll() is not None:
                running.remove(item)
                status = "done" if item[2].returncode == 0 else f"FAILED ({item[2].returncode})"
                print(f"[{time.strftime('%H:%M:%S')}] {status} {item[0]} seed {item[1]}", flush=True)
    report(args)


def _mean_std(values):
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def report(args):
    """Writes runs.csv, ablation.md and the PNGs from the finished runs."""
    out = pathlib.Path(args.out).resolve()
    results = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/result.json"))]
    if not results:
        raise SystemExit(f"no finished runs in {out / 'runs'}")
    rows = [r["row"] for r in results]
    with open(out / "runs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"Budget per run: {args.epochs} epochs x {steps_per_epoch(out, args.batch_size)} steps of "
        f"{args.batch_size} x {args.segment} s crops (on-the-fly mixing), Adam "
        "lr 1e-3, 1 CPU thread; seeds " + ", ".join(str(s) for s in sorted({r['seed'] for r in rows})) + ".",
        "",
    ]
    for test_name, title in [("synthetic", "Synthetic test: unseen speakers and unseen real noise, 2.5-17.5 dB"),
                             ("voicebank", "Real VoiceBank-DEMAND test pairs (33, p232/p257)")]:
        lines += [f"### {title}", "",
                  "| variant | runs | PESQ-WB | STOI | CSIG | CBAK | COVL | SI-SDR (dB) | params | wall min* |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        noisy = score_noisy(out / "data")[test_name]
        lines.append("| noisy input | - | " + " | ".join(f"{noisy[m]:.3f}" for m in METRICS) + " | - | - |")
        for variant in VARIANTS:
            chosen = [r for r in rows if r["variant"] == variant]
            if not chosen:
                continue
            cells = [_mean_std([r[f"{test_name}_{m}"] for r in chosen]) for m in METRICS]
            lines.append(
                f"| {LABELS[variant]} | {len(chosen)} | " + " | ".join(cells)
                + f" | {chosen[0]['parameters']:,} | {statistics.fmean(r['train_minutes'] for r in chosen):.1f} |"
            )
        lines.append("")
    lines += ["*wall minutes of training and testing, one thread per run, two runs at a "
              "time on a 2-core machine that other jobs shared: compare speed with "
              "`benchmarks/` throughput figures, not this column.", ""]
    lines += paired_differences(rows)
    (out / "ablation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(out / "data" / "split.json", out / "split.json")  # the files used
    print("\n".join(lines))
    plot_curves(results, out / "valid_curves.png")
    plot_spectrograms(out)


def steps_per_epoch(out, batch_size):
    manifest = json.loads((out / "data" / "train.json").read_text())
    return -(-len(manifest) // batch_size)


def paired_differences(rows):
    """Per-seed differences (same seed, same data order) with their spread."""
    lines = ["### Paired differences in PESQ-WB (same seed), mean ± std over seeds", "",
             "| comparison | synthetic | voicebank |", "|---|---|---|"]
    by_key = {(r["variant"], r["seed"]): r for r in rows}
    for name, (a, b) in {"CM: +CM - baseline": ("cm", "baseline"),
                         "CR: +CR - baseline": ("cr", "baseline"),
                         "CR on top of CM: full - +CM": ("full", "cm"),
                         "CM on top of CR: full - +CR": ("full", "cr"),
                         "full - MetricGAN+ generator": ("full", "metricgan")}.items():
        cells = []
        for test_name in ["synthetic", "voicebank"]:
            diffs = [by_key[(a, s)][f"{test_name}_pesq"] - by_key[(b, s)][f"{test_name}_pesq"]
                     for (v, s) in by_key if v == a and (b, s) in by_key]
            cells.append(_mean_std(diffs) + f" (n={len(diffs)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot_curves(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = dict(zip(VARIANTS, ["C0", "C1", "C2", "C3", "C4"]))
    for result in results:
        variant = result["row"]["variant"]
        curve = result["valid_curve"]
        ax.plot([c["epoch"] for c in curve], [c["valid_pesq"] for c in curve],
                color=colours[variant], alpha=0.7,
                label=LABELS[variant] if result["row"]["seed"] == min(
                    r["row"]["seed"] for r in results if r["row"]["variant"] == variant) else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation PESQ-WB")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_spectrograms(out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    import torch

    from cmse_speechbrain.dataio import read_audio_checked

    manifest = json.loads((out / "data" / "test_synthetic.json").read_text())
    utt_id = sorted(manifest)[0]
    seed = min(int(p.name.rsplit("-", 1)[1]) for p in (out / "runs").glob("*-*"))
    panels = [("noisy", manifest[utt_id]["noisy_wav"])]
    for variant in VARIANTS:
        wav = out / "runs" / f"{variant}-{seed}" / "enhanced_wavs" / "synthetic" / f"{utt_id}.wav"
        if wav.exists():
            panels.append((LABELS[variant], wav))
    panels.append(("clean", manifest[utt_id]["clean_wav"]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.7 * len(panels)), sharex=True)
    for ax, (title, path) in zip(axes, panels):
        wav = read_audio_checked(path)
        spec = torch.stft(wav, 512, 256, window=torch.hamming_window(512), return_complex=True)
        ax.imshow(20 * torch.log10(spec.abs() + 1e-5).numpy(), origin="lower", aspect="auto",
                  vmin=-80, vmax=20, extent=[0, wav.numel() / 16000, 0, 8])
        ax.set_title(title, fontsize=8)
        ax.set_ylabel("kHz", fontsize=7)
    axes[-1].set_xlabel(f"seconds ({utt_id}, seed {seed})")
    fig.tight_layout()
    fig.savefig(out / "spectrograms.png", dpi=72)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"),
                        help="the real-audio folder (../shared/data)")
    parser.add_argument("--out", default=str(ROOT / "reports" / "ablation"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--segment", type=float, default=2.0, help="training crop, seconds")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1 thread each)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--run-one", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        run_one(args)
    elif args.report_only:
        report(args)
    else:
        launch_all(args)


if __name__ == "__main__":
    main()
