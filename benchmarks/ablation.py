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
* ``control``: the baseline with a plain self-attention bottleneck
  (:class:`cmse_speechbrain.cmcr_net.SelfAttentionBottleneck`) of the CM's
  parameter count and cost, so that the CM's design is measured and not its
  extra capacity;
* ``metricgan``: SpeechBrain's MetricGAN+ generator
  (:class:`cmse_speechbrain.peers.MetricGANPlusGenerator`) with the same
  objective (reconstruction + CR);
* ``cr_speaker``: ``cr`` with CR in a pretrained space (resemblyzer's
  speaker encoder, ``cr_space: speaker``) instead of the random encoder;
* ``cr_distillmos``: ``cr`` in the encoder of Distill-MOS, distilled from a
  wav2vec 2.0 XLS-R based quality model (``cr_space: distillmos``; needs
  ``pip install distillmos``); ``full_distillmos``: CMCR-Net with that CR;
* ``cr_curricular``: ``cr`` with the authors' curricular negatives: the
  ``baseline`` run of the same seed, exported, is the harder negative
  (``cr_negatives: noisy+baseline``); it starts once that run has finished.

Each run is its own recipe process. The fixed validation and test sets are
prepared once and shared. The best checkpoint of each run (validation
quality) is tested on the 33 real VoiceBank-DEMAND pairs, the synthetic
mixtures of unseen speakers x unseen noise files, the 3 DNS pairs (each also
by DNSMOS OVRL, with the ``dnsmos`` extra) and (by DNSMOS only) the 9 real
recordings.

Writes to ``--out`` (default ``reports/ablation``): ``runs.csv`` (one row per
run and test set), ``utterances.csv`` (per utterance), ``ablation.md`` (cost,
means over seeds of PESQ, STOI, CSIG, CBAK, COVL, SI-SDR and DNSMOS, paired
differences with 95 % bootstrap intervals over seeds and utterances, the
stream probe of the CM against the control), ``stream_probe.json``,
``valid_curves.png``, ``spectrograms.png``, ``cm_gate.png`` and a listening
page ``listening/index.html``, and ``curves.json`` (every run's validation
curve). Runs that finished are not rerun; an unfinished run resumes from its
checkpoints. Runs whose folders are gone (another machine) are reported from
what the previous report in ``--out`` archived (:func:`archived_runs`), so a
study can grow by new variants without rerunning the old ones.

Usage (the defaults are the study's settings)::

    python benchmarks/ablation.py --jobs 2
    python benchmarks/ablation.py --report-only   # the report again, from the runs

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
import statistics
import subprocess
import sys
import time

from common import ROOT, ablation_study

HPARAMS = ROOT / "hparams" / "cmse_realmix.yaml"
STUDY = ablation_study()  # benchmarks/hparams/ablation_variants.yaml
VARIANTS = STUDY["variants"]  # recipe overrides of each variant
SIZES = STUDY["sizes"]
TEST_SETS = ["voicebank", "synthetic", "dns"]
METRICS = ["pesq", "stoi", "csig", "cbak", "covl", "si_sdr"]
EXTRA_METRICS = [
    "csig",
    "cbak",
    "covl",
    "si_sdr",
]  # computed here from the saved outputs
DNSMOS = ["sig", "bak", "ovrl"]
COMPARISONS = [  # (reference, variant): the paired differences reported
    ("baseline", "cm"),
    ("baseline", "cr"),
    ("baseline", "full"),
    ("cm", "full"),
    ("control", "cm"),
    ("metricgan", "full"),
    ("cr", "cr_speaker"),
    ("cr", "cr_distillmos"),
    ("cr", "cr_curricular"),
    ("baseline", "cr_distillmos"),
    ("baseline", "cr_curricular"),
    ("cm", "full_distillmos"),
]
COMPARED_METRICS = ["pesq", "stoi", "si_sdr"]


def control_width(size):
    """Width of the self-attention control with the CM's parameter count."""
    from cmse_speechbrain.cmcr_net import CMCRNet, matched_control_width

    net = CMCRNet(channels=SIZES[size]["channels"], d_model=SIZES[size]["d_model"])
    return matched_control_width(
        net.cm.input_proj.in_features, SIZES[size]["d_model"], net.cm.contrastive.nhead
    )


def run_arguments(args, variant, seed, folder):
    """The recipe command line of one run."""
    epochs = max(1, args.steps // args.steps_per_epoch)
    command = [
        sys.executable,
        str(ROOT / "recipes/RealMix/train.py"),
        str(HPARAMS),
        f"--output_folder={folder}",
        f"--data_folder={args.data}",
        f"--seed={seed}",
        f"--number_of_epochs={epochs}",
        f"--train_steps_per_epoch={args.steps_per_epoch}",
        f"--batch_size={args.batch_size}",
        f"--train_segment_seconds={args.segment}",
        f"--warmup_steps={args.warmup}",
        f"--aux_start_steps={args.warmup}",
        f"--aux_ramp_steps={args.warmup}",
        "--num_workers=0",
        "--pesq_n_jobs=1",
        "--device=cpu",
        "--init_from=null",
    ]
    overrides = dict(VARIANTS[variant])
    source = overrides.pop("hard_negative_from", None)
    if source is not None:  # curricular CR: the exported model of another run
        objective = dict(overrides.get("objective_hparams", {}))
        objective["cr_baseline_folder"] = str(hard_negative_folder(args, source, seed))
        overrides["objective_hparams"] = objective
    if "model" not in overrides:  # a CMCR-Net variant: the network size of the study
        size = SIZES[args.size]
        model = {"channels": size["channels"]}
        if variant == "control":
            model["control_width"] = control_width(args.size)
        command += [
            "--model_hparams=" + json.dumps(model),
            f"--d_model={size['d_model']}",
        ]
    return command + [
        f"--{key}={_flag_value(value)}" for key, value in overrides.items()
    ]


def hard_negative_folder(args, source, seed):
    """The model folder of run ``source``/``seed`` (exported on first use
    from its best validation checkpoint): curricular CR's hard negative."""
    from cmse_speechbrain.export import export_model

    run = args.out / "runs" / f"{source}_s{seed}"
    folder = run / "model_folder"
    if not (folder / "enhance_model.ckpt").is_file():
        export_model(run, folder, overwrite=True)
    return folder


def waiting_for(args, variant, seed):
    """The run a variant needs finished first (its hard negative), or None."""
    source = VARIANTS[variant].get("hard_negative_from")
    if source is not None and not finished(args, source, seed):
        return source
    return None


def _flag_value(value):
    """An override as a recipe flag's text (YAML reads it back unchanged)."""
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def prepare(args, shared):
    """Prepares the fixed sets once (in ``shared``)."""
    sys.path.insert(0, str(ROOT / "recipes/RealMix"))
    from realmix_prepare import prepare_realmix

    prepare_realmix(args.data, shared, seed=0)


def finished_folder(folder):
    """Whether a run has written its last test outputs."""
    return (folder / "dnsmos_real_summary.json").exists()


def finished(args, variant, seed):
    """Whether a run has finished (then it is not rerun; an unfinished run
    resumes from its checkpoints)."""
    return finished_folder(args.out / "runs" / f"{variant}_s{seed}")


def launch(args, variant, seed, shared):
    folder = args.out / "runs" / f"{variant}_s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    for item in shared.iterdir():
        if item.is_file():
            shutil.copy(item, folder / item.name)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    log = open(folder / "stdout.log", "w", encoding="utf-8")
    return folder, subprocess.Popen(
        run_arguments(args, variant, seed, folder),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def _audio(path):
    """A checked mono 16 kHz file as float64 numpy (what the metrics take)."""
    from cmse_speechbrain.dataio import read_audio_checked

    return read_audio_checked(path).double().numpy()


def _cached_scores(cache, compute):
    """Per-utterance scores of a run, computed once: ``compute()`` gives the
    rows (dicts with ``set`` and ``id``) or None when it cannot run; they are
    written atomically to the CSV ``cache`` and read back from it.
    Returns {(set, id): row} ({} when ``compute`` gave None)."""
    from cmse_speechbrain.dataio import atomic_output

    if not cache.exists():
        rows = compute()
        if rows is None:
            return {}
        with atomic_output(cache) as partial:
            with open(partial, "w", newline="", encoding="utf-8") as fout:
                writer = csv.DictWriter(fout, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    with open(cache, encoding="utf-8") as fin:
        return {(row["set"], row["id"]): row for row in csv.DictReader(fin)}


def extra_metrics(args, folder):
    """CSIG, CBAK, COVL and SI-SDR of a finished run's noisy inputs and
    outputs, from the files it saved (cached in ``extra_metrics.csv``).
    Returns {(set, id): {"noisy_csig": ..., "enhanced_csig": ..., ...}}."""
    from cmse_speechbrain.metrics import composite_scores, si_sdr

    def compute():
        rows = []
        for name in TEST_SETS:
            with open(folder / f"test_results_{name}.csv", encoding="utf-8") as fin:
                pesq = {row["id"]: row for row in csv.DictReader(fin)}
            manifest = json.loads(
                (folder / f"test_{name}.json").read_text(encoding="utf-8")
            )
            for uid, entry in manifest.items():
                clean = _audio(
                    entry["clean_wav"].replace("{data_root}", str(args.data))
                )
                row = {"set": name, "id": uid}
                signals = {
                    "noisy": _audio(
                        entry["noisy_wav"].replace("{data_root}", str(args.data))
                    ),
                    "enhanced": _audio(folder / "enhanced_wavs" / name / f"{uid}.wav"),
                }
                for kind, signal in signals.items():
                    n = min(len(clean), len(signal))
                    scores = composite_scores(
                        clean[:n],
                        signal[:n],
                        pesq_score=float(pesq[uid][f"{kind}_pesq"]),
                    )
                    for metric in ["csig", "cbak", "covl"]:
                        row[f"{kind}_{metric}"] = round(scores[metric], 4)
                    row[f"{kind}_si_sdr"] = round(si_sdr(clean[:n], signal[:n]), 3)
                rows.append(row)
        return rows

    return _cached_scores(folder / "extra_metrics.csv", compute)


def reference_dnsmos(args, folder):
    """DNSMOS OVRL of a finished run's noisy inputs and outputs on the test
    sets with references (cached in ``dnsmos_tests.csv``; {} without the
    ``dnsmos`` extra). Returns
    {(set, id): {"noisy_ovrl": ..., "enhanced_ovrl": ...}}."""
    from cmse_speechbrain.metrics import dnsmos_scores
    from cmse_speechbrain.reporting import dnsmos_available

    def compute():
        if not dnsmos_available("the ablation's test sets"):
            return None
        rows = []
        for name in TEST_SETS:
            manifest = json.loads(
                (folder / f"test_{name}.json").read_text(encoding="utf-8")
            )
            for uid, entry in manifest.items():
                noisy = _audio(
                    entry["noisy_wav"].replace("{data_root}", str(args.data))
                )
                enhanced = _audio(folder / "enhanced_wavs" / name / f"{uid}.wav")
                rows.append(
                    {
                        "set": name,
                        "id": uid,
                        "noisy_ovrl": round(dnsmos_scores(noisy)["ovrl"], 4),
                        "enhanced_ovrl": round(dnsmos_scores(enhanced)["ovrl"], 4),
                    }
                )
        return rows

    return _cached_scores(folder / "dnsmos_tests.csv", compute)


def read_run(args, folder):
    """Per-utterance test scores (the recipe's PESQ/STOI, the extra metrics,
    DNSMOS of the real recordings as set ``real``) and validation curve of a
    finished run."""
    utterances = []
    extra = extra_metrics(args, folder) if finished_folder(folder) else {}
    dnsmos = reference_dnsmos(args, folder) if finished_folder(folder) else {}
    for name in TEST_SETS:
        path = folder / f"test_results_{name}.csv"
        if path.exists():
            with open(path, encoding="utf-8") as fin:
                for row in csv.DictReader(fin):
                    more = {
                        k: v
                        for scores in (extra, dnsmos)
                        for k, v in scores.get((name, row["id"]), {}).items()
                        if k not in ("set", "id")
                    }
                    utterances.append(dict(row, **more, set=name))
    path = folder / "dnsmos_real.csv"
    if path.exists():
        with open(path, encoding="utf-8") as fin:
            utterances += [dict(row, set="real") for row in csv.DictReader(fin)]
    curve = []
    log = folder / "train_log.txt"
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            match = re.search(r"valid quality: ([0-9.e+-]+)", line)
            if line.startswith("epoch") and match:
                curve.append(float(match.group(1)))
    return utterances, curve


def build_model(args, variant):
    """The untrained network of a variant, built from the same YAML as the recipe."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    torch.manual_seed(0)
    if variant == "metricgan":
        from cmse_speechbrain.peers import MetricGANPlusGenerator

        return MetricGANPlusGenerator()
    size = SIZES[args.size]
    overrides = {
        "channels": size["channels"],
        "d_model": size["d_model"],
        "use_cm": VARIANTS[variant].get("use_cm", True),
    }
    if variant == "control":
        overrides["control_width"] = control_width(args.size)
    with open(ROOT / "hparams" / "common" / "cmcr_net.yaml", encoding="utf-8") as fin:
        return load_hyperpyyaml(fin, overrides)["model"]


def best_model(args, variant, folder):
    """A run's network at its best validation checkpoint (eval mode)."""
    import torch
    from speechbrain.utils.checkpoints import Checkpointer

    model = build_model(args, variant)
    checkpoint = Checkpointer(folder / "save").find_checkpoint(max_key="quality")
    model.load_state_dict(
        torch.load(
            checkpoint.paramfiles["model"], map_location="cpu", weights_only=True
        )
    )
    return model.eval()


def model_costs(args, variants):
    """Parameters and MACs per second of 16 kHz audio (FFTs not counted)."""
    import torch

    from model_cost import macs

    torch.set_num_threads(args.threads)
    costs = {}
    for variant in variants:
        model = build_model(args, variant).eval()
        audio = torch.zeros(1, 16000)
        costs[variant] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "macs": macs(lambda: model(audio)),
        }
    return costs


def diagnostic_pairs(args, count=12):
    """(clean, noise) pairs of the CM diagnostics: VoiceBank-DEMAND test speech
    (speakers never trained on) x noise recordings no training used."""
    from cmse_speechbrain.dataio import read_audio_checked

    from cm_gate import NOISES

    clean_files = sorted((args.data / "voicebank_demand_test" / "clean").glob("*.wav"))[
        :count
    ]
    noises = [read_audio_checked(args.data / name) for name in NOISES]
    return [
        (read_audio_checked(path), noises[i % len(noises)])
        for i, path in enumerate(clean_files)
    ]


def cm_diagnostics(args, results):
    """Stream probe (:func:`cmse_speechbrain.diagnostics.stream_probe`) of
    every CM and control run, and the gate PNG of the first CM run."""
    import torch

    from cmse_speechbrain.diagnostics import plot_gate, stream_probe

    torch.set_num_threads(args.threads)
    pairs = diagnostic_pairs(args)
    probes = {}
    archived = args.out / "stream_probe.json"
    if archived.exists():  # the probes of runs whose folders are gone
        for run, streams in json.loads(archived.read_text()).items():
            variant, seed = run.rsplit("_s", 1)
            on_disk = (args.out / "runs" / run).exists()
            if (variant, int(seed)) in results and not on_disk:
                probes[run] = streams
    for variant, seed in sorted(results):
        if variant in ("cm", "full", "full_distillmos", "control") and finished(
            args, variant, seed
        ):
            model = best_model(args, variant, args.out / "runs" / f"{variant}_s{seed}")
            probes[f"{variant}_s{seed}"] = stream_probe(model, pairs)
            if variant == "cm" and not (args.out / "cm_gate.png").exists():
                plot_gate(
                    model,
                    pairs[0][0],
                    pairs[0][1],
                    5.0,
                    args.out / "cm_gate.png",
                    title=(
                        f"CM gate of the +CM run (seed {seed}), "
                        "unseen speech + unseen noise, 5 dB"
                    ),
                )
    return dict(sorted(probes.items()))


def plot_spectrograms(args, results, path):
    """Noisy, clean and every variant's output (first seed) of one VoiceBank
    test utterance, on one colour scale."""
    import torch

    from common import pyplot

    plt = pyplot()
    if plt is None:
        return
    seed = args.seeds[0]
    rows = [
        u
        for (v, s), (utterances, _) in results.items()
        if s == seed and v == "baseline"
        for u in utterances
        if u["set"] == "voicebank"
    ]
    if not rows:
        return
    rows.sort(key=lambda u: float(u["noisy_pesq"]))
    uid = rows[len(rows) // 2]["id"]  # median noisy PESQ
    signals = [
        ("noisy", args.data / "voicebank_demand_test" / "noisy" / f"{uid}.wav"),
        ("clean", args.data / "voicebank_demand_test" / "clean" / f"{uid}.wav"),
    ]
    signals += [
        (
            v,
            args.out
            / "runs"
            / f"{v}_s{seed}"
            / "enhanced_wavs"
            / "voicebank"
            / f"{uid}.wav",
        )
        for v in args.variants
        if (args.out / "runs" / f"{v}_s{seed}").exists()
    ]
    signals = [(name, file) for name, file in signals if pathlib.Path(file).exists()]
    columns = 2
    fig, axes = plt.subplots(
        (len(signals) + 1) // columns,
        columns,
        figsize=(10, 1.8 * ((len(signals) + 1) // columns)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    window = torch.hann_window(512)
    for ax, (name, file) in zip(axes.flat, signals):
        signal = torch.from_numpy(_audio(file)).float()
        db = 20 * torch.log10(
            torch.stft(signal, 512, 256, window=window, return_complex=True).abs()
            + 1e-5
        )
        ax.imshow(
            db.numpy(),
            origin="lower",
            aspect="auto",
            vmin=-60,
            vmax=30,
            cmap="magma",
            extent=[0, signal.numel() / 16000, 0, 8],
        )
        ax.set_title(name, fontsize=9)
    for ax in axes.flat[len(signals) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("kHz")
    fig.suptitle(
        f"VoiceBank-DEMAND {uid} (median noisy "
        f"PESQ), seed {seed}, same colour scale (dB)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def training_seconds(folder):
    """Training seconds of a run from its log: the median epoch (training
    steps + validation, from "Going into epoch" to that epoch's summary line)
    times the number of epochs. The median leaves out the epochs stretched
    by pauses or by a resume in another session; the wall time of a run
    counts those.

    Example
    -------
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "log.txt").write_text("\\n".join([
    ...     "2026-01-01 10:00:00,000 - x - INFO - Going into epoch 1",
    ...     "2026-01-01 10:02:00,000 - x - INFO - epoch: 1, lr: 1",
    ...     "2026-01-01 10:02:01,000 - x - INFO - Going into epoch 2",
    ...     "2026-01-01 11:00:01,000 - x - INFO - epoch: 2, lr: 1",
    ...     "2026-01-01 12:00:00,000 - x - INFO - Going into epoch 3",
    ...     "2026-01-01 12:02:00,000 - x - INFO - epoch: 3, lr: 1"]))
    >>> training_seconds(folder)
    360.0
    """
    from datetime import datetime

    durations, start = {}, None
    log = folder / "log.txt"
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        try:
            stamp = datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
        if re.search(r"Going into epoch \d+", line):
            start = stamp
        match = re.search(r"INFO - epoch: (\d+),", line)
        if match and start is not None:
            # the last try counts
            durations[int(match.group(1))] = (stamp - start).total_seconds()
    if not durations:
        return float("nan")
    return statistics.median(durations.values()) * len(durations)


def archived_runs(out):
    """The runs of an earlier report whose folders are gone (another machine):
    their per-utterance scores from ``utterances.csv``, their training
    minutes from ``runs.csv`` and, where an earlier report archived them,
    their validation curves from ``curves.json``. A report built from them
    gives the same tables and paired differences as the one that wrote them
    (:func:`cm_diagnostics` keeps their stream probes from
    ``stream_probe.json``); the spectrograms and the listening page come only
    from the runs still on disk.

    Rows marked ``study=first`` are the earlier version of a run that was
    later rerun with different results (:func:`superseded_runs`); they come
    back separately, so that the runs trained beside them stay paired with
    them.

    Returns ``({(variant, seed): (utterances, curve)}, {(variant, seed):
    seconds}, {(variant, seed): utterances of the earlier version})``.

    Example
    -------
    >>> import tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (out / "utterances.csv").write_text(
    ...     "id,enhanced_pesq,set,variant,seed\\nu1,2.5,voicebank,cr,0\\n")
    >>> _ = (out / "runs.csv").write_text(
    ...     "variant,seed,set,minutes\\ncr,0,voicebank,30.0\\n")
    >>> results, seconds, earlier = archived_runs(out)
    >>> results[("cr", 0)][0][0]["enhanced_pesq"], results[("cr", 0)][1]
    ('2.5', [])
    >>> seconds[("cr", 0)], earlier
    (1800.0, {})
    """
    results, seconds, earlier = {}, {}, {}
    path = out / "utterances.csv"
    if not path.exists():
        return results, seconds, earlier
    curves_path = out / "curves.json"
    curves = (
        json.loads(curves_path.read_text(encoding="utf-8"))
        if curves_path.exists()
        else {}
    )
    with open(path, encoding="utf-8") as fin:
        for row in csv.DictReader(fin):
            key = (row.pop("variant"), int(row.pop("seed")))
            row = {k: v for k, v in row.items() if v != ""}
            if row.pop("study", "") == "first":
                earlier.setdefault(key, []).append(row)
                continue
            results.setdefault(key, ([], curves.get(f"{key[0]}_s{key[1]}", [])))
            results[key][0].append(row)
    runs_path = out / "runs.csv"
    if runs_path.exists():
        with open(runs_path, encoding="utf-8") as fin:
            for row in csv.DictReader(fin):
                key = (row["variant"], int(row["seed"]))
                seconds[key] = float(row["minutes"] or "nan") * 60
    return results, seconds, earlier


def superseded_runs(archive, results, metric="enhanced_pesq"):
    """The archived versions of runs that were rerun (their folders are back)
    with other scores: ``{(variant, seed): archived utterances}``. A rerun
    normally reproduces its run exactly; one that does not (e.g. the earlier
    run was resumed after an interruption, which changes its random stream)
    replaces it in the tables, and the archived runs stay paired with the
    version they were trained beside.

    Example
    -------
    >>> old = ([{"id": "u1", "enhanced_pesq": "2.0"}], [])
    >>> same, other = ([{"id": "u1", "enhanced_pesq": "2.0"}], []), (
    ...     [{"id": "u1", "enhanced_pesq": "2.2"}], [])
    >>> superseded_runs({("b", 0): old}, {("b", 0): same})
    {}
    >>> superseded_runs({("b", 0): old}, {("b", 0): other})
    {('b', 0): [{'id': 'u1', 'enhanced_pesq': '2.0'}]}
    """
    differing = {}
    for key, (utterances, _) in archive.items():
        if key not in results or results[key] is archive[key]:
            continue
        rerun = {(u.get("set", ""), u["id"]): u for u in results[key][0]}
        for u in utterances:
            other = rerun.get((u.get("set", ""), u["id"]))
            if (
                other is not None
                and metric in u
                and abs(float(u[metric]) - float(other[metric])) > 1e-3
            ):
                differing[key] = utterances
                break
    return differing


def paired_utterances(results, key, partner, first_study, earlier):
    """A run's utterance scores for a paired difference with ``partner``: the
    version trained beside the partner's (the archived one of a rerun that
    differs, where the partner is a run of that earlier study), else the
    current one.

    Example
    -------
    >>> results = {("baseline", 2): (["rerun"], []), ("cm", 2): (["cm"], [])}
    >>> earlier = {("baseline", 2): ["archived"]}
    >>> paired_utterances(results, ("baseline", 2), ("cm", 2), {("cm", 2)}, earlier)
    ['archived']
    >>> paired_utterances(results, ("baseline", 2), ("cm", 2), set(), earlier)
    ['rerun']
    >>> paired_utterances(results, ("cm", 2), ("baseline", 2), {("cm", 2)}, earlier)
    ['cm']
    """
    if partner in first_study and key in earlier:
        return earlier[key]
    return results.get(key, ([], []))[0]


def write_listening_page(args, variants):
    """``listening/index.html``: the VoiceBank-DEMAND test pairs, noisy, clean
    and every variant's output (first seed), players linking to the files."""
    from cmse_speechbrain.report import write_report

    seed = args.seeds[0]
    systems = {
        v: args.out / "runs" / f"{v}_s{seed}" / "enhanced_wavs" / "voicebank"
        for v in variants
    }
    systems = {v: folder for v, folder in systems.items() if folder.is_dir()}
    test = args.data / "voicebank_demand_test"
    if systems and test.is_dir():
        write_report(
            test / "clean",
            test / "noisy",
            systems,
            args.out / "listening",
            dnsmos=False,
            copy_audio=False,
            title=f"Ablation, seed {seed}: VoiceBank-DEMAND test pairs",
        )


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
    mean = sum(b - a for s in seeds for a, b in pairs[s]) / sum(
        len(pairs[s]) for s in seeds
    )
    draws = []
    for _ in range(resamples):
        values = []
        for s in (rng.choice(seeds) for _ in seeds):
            rows = pairs[s]
            values += [rows[rng.randrange(len(rows))] for _ in rows]
        draws.append(sum(b - a for a, b in values) / len(values))
    draws.sort()
    return mean, draws[int(0.025 * resamples)], draws[int(0.975 * resamples) - 1]


def late_gain(curve, last=4):
    """How much a validation curve still rose at the end: the best of its
    last ``last`` validations minus the best before them (0 or less: no
    better checkpoint came in the last ``last`` validations). With 12
    validations every 250 steps and ``last=4``, the gain of the last 1,000 steps.

    Example
    -------
    >>> round(late_gain([0.40, 0.50, 0.53, 0.53, 0.53, 0.54, 0.53]), 3)
    0.01
    >>> round(late_gain([0.40, 0.50, 0.55, 0.53, 0.54, 0.54, 0.53]), 3)
    -0.01
    """
    if len(curve) <= last:
        return float("nan")
    return max(curve[-last:]) - max(curve[:-last])


def _curves(results, variant):
    """The validation curves of a variant's finished runs, by seed."""
    return [
        curve
        for (v, _), (_, curve) in sorted(results.items())
        if v == variant and curve
    ]


def earlier_curve_cells(report_path):
    """The validation-curve cells ("first → best | gain") of each variant in
    an earlier ``ablation.md``: what a report keeps for archived runs whose
    curves were not archived.

    Example
    -------
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ablation.md"
    >>> _ = path.write_text(
    ...     "| cr | + CR | 3 | 1 | 2 | 28.7 | 0.486 → 0.532 | +0.0043 ± 0.0058 |\\n")
    >>> earlier_curve_cells(path)
    {'cr': '0.486 → 0.532 | +0.0043 ± 0.0058'}
    """
    cells = {}
    if report_path.exists():
        for line in report_path.read_text(encoding="utf-8").splitlines():
            parts = [p.strip() for p in line.strip().strip("|").split("|")]
            if len(parts) == 8 and "→" in parts[6]:
                cells[parts[0]] = f"{parts[6]} | {parts[7]}"
    return cells


def _mean_sd(values):
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)) ** 0.5


def report(args, results, seconds, from_archive=(), earlier=None, first_study=()):
    """Writes runs.csv, utterances.csv, ablation.md and the PNGs.

    ``from_archive``: the keys of ``results`` rebuilt from an earlier report;
    ``earlier``: the archived versions of reruns that differ from them
    (:func:`superseded_runs`), which the runs of ``first_study`` (those
    trained beside them) are paired with.
    """
    earlier = earlier or {}
    out = args.out
    sets = TEST_SETS + ["real"]
    columns = {
        name: ([f"dnsmos_{k}" for k in DNSMOS] if name == "real" else METRICS)
        for name in sets
    }
    if all(
        "enhanced_ovrl" in u
        for _, (utterances, _) in results.items()
        for u in utterances
    ):
        columns.update({name: METRICS + ["dnsmos_ovrl"] for name in TEST_SETS})

    def score(u, kind, metric):
        key = (
            f"{kind}_{metric[len('dnsmos_') :]}"
            if metric.startswith("dnsmos_")
            else f"{kind}_{metric}"
        )
        return float(u[key])

    rows, utterance_rows = [], []
    for (variant, seed), (utterances, curve) in sorted(results.items()):
        utterance_rows += [dict(u, variant=variant, seed=seed) for u in utterances]
        for name in sets:
            subset = [u for u in utterances if u["set"] == name]
            if not subset:
                continue
            row = {
                "variant": variant,
                "seed": seed,
                "set": name,
                "utterances": len(subset),
                "minutes": round(seconds.get((variant, seed), float("nan")) / 60, 1),
            }
            for metric in columns[name]:
                for kind in ["noisy", "enhanced"]:
                    row[f"{kind}_{metric}"] = sum(
                        score(u, kind, metric) for u in subset
                    ) / len(subset)
            rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "runs.csv", "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    for (variant, seed), utterances in sorted(earlier.items()):
        utterance_rows += [
            dict(u, variant=variant, seed=seed, study="first") for u in utterances
        ]
    fields = list(dict.fromkeys(k for r in utterance_rows for k in r))
    with open(out / "utterances.csv", "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=fields)
        writer.writeheader()
        writer.writerows(utterance_rows)
    (out / "curves.json").write_text(
        json.dumps(
            {f"{v}_s{s}": curve for (v, s), (_, curve) in sorted(results.items())},
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )

    variants = [v for v in args.variants if any(k[0] == v for k in results)]
    costs = model_costs(args, variants)
    earlier_cells = earlier_curve_cells(out / "ablation.md")
    lines = [
        f"# Ablation at an equal budget ({args.steps} steps of {args.batch_size} x "
        f"{args.segment:g} s, seeds {' '.join(map(str, args.seeds))}, network size "
        f"'{args.size}', CPU)",
        "",
        "Command: `python benchmarks/ablation.py "
        + " ".join(sys.argv[1:])
        + "` (the runs: `python benchmarks/ablation.py --jobs 2`; finished runs "
        "are not rerun, `--report-only` rewrites this report from them). "
        "Training minutes: the median epoch (steps + validation) times the "
        "epochs, from each run's log, on the shared 2-core machine with 2 "
        "runs at a time (the median leaves out epochs stretched by pauses and "
        "resumes). Other work shared the machine during some runs, so these "
        "minutes compare loosely; `benchmarks/training_throughput.py` times "
        "the variants' steps back to back.",
        "",
        "Every run: the RealMix recipe (real speech x real noise mixed on the fly, "
        "speaker- and noise-disjoint splits), the same steps, learning-rate schedule "
        "(warm-up then linear decay to 0) and seeds; the checkpoint with the best "
        "validation quality (56 fixed utterances) is tested. Mean ± standard deviation "
        "over seeds. Each seed draws its own validation and synthetic test mixtures "
        "(same speakers and noise files, other segments and SNRs); the variants of one "
        "seed share them, so the paired differences compare like with like.",
        "",
        "## Variants and cost",
        "",
        "| system | what | seeds | parameters | MMACs per second "
        "of audio | training minutes (mean) | validation "
        "quality: first → best | gain in the last 4 validations |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    what = {
        "baseline": "CMCR-Net without CM and CR",
        "cm": "+ CM and its stream loss",
        "cr": "+ CR (random encoder space)",
        "full": "CMCR-Net (CM + CR)",
        "control": "baseline + plain self-attention bottleneck, CM's parameter count",
        "metricgan": "SpeechBrain MetricGAN+ generator, reconstruction + CR",
        "cr_speaker": "+ CR in the pretrained speaker-encoder space",
        "cr_distillmos": "+ CR in Distill-MOS's encoder (distilled from an "
        "XLS-R based quality model)",
        "cr_curricular": "+ CR, the baseline run's output as a second, harder "
        "negative (curricular weights)",
        "full_distillmos": "CMCR-Net, CR in Distill-MOS's encoder",
    }
    for variant in variants:
        minutes = [
            seconds[k] / 60
            for k in seconds
            if k[0] == variant and seconds[k] == seconds[k]
        ]
        seeds = sum(1 for v, _ in results if v == variant)
        curves = _curves(results, variant)
        if curves:
            first = statistics.mean(c[0] for c in curves)
            best = statistics.mean(max(c) for c in curves)
            gain = _mean_sd([late_gain(c) for c in curves])
            curve_cells = f"{first:.3f} → {best:.3f} | {gain[0]:+.4f} ± {gain[1]:.4f}"
        else:  # archived runs of a report that kept no curves: its cells
            curve_cells = earlier_cells.get(variant, "– | –")
        lines.append(
            f"| {variant} | {what.get(variant, '')} | {seeds} | "
            f"{costs[variant]['parameters']:,} | {costs[variant]['macs'] / 1e6:,.0f} "
            f"| {(sum(minutes) / len(minutes)) if minutes else float('nan'):.1f} | "
            f"{curve_cells} |"
        )
    lines += [
        "",
        "Validation quality: 0.5 PESQ' + 0.5 STOI on the fixed validation set "
        f"(PESQ' = (PESQ - 1) / 3.5), every {args.steps_per_epoch} steps; the last "
        "column is the best of the last 4 validations minus the best before them, mean "
        "± sd over seeds (`valid_curves.png`): near 0 where a curve has flattened.",
        "",
        "CR spaces: the random frozen convolutional encoder (the default, no download) "
        "and, as the pretrained one, resemblyzer's speaker encoder (torch weights "
        "shipped in a registry wheel, loaded with `weights_only=True`; an LSTM over "
        "mel bands trained contrastively on speech, whose layers place a halfway "
        "mixture closer to the clean speech than the noisy one). The paper's "
        "self-supervised models need a download this machine cannot make; "
        "silero-vad (a VAD), pitch trackers (pitch only) and DNSMOS (ONNX, not "
        "differentiable in torch) were looked at and not trained with "
        '(docs/model.md, "The CR representation"). The nearest to the paper\'s '
        "space that runs offline is Distill-MOS's encoder (`cr_space: distillmos`, "
        "weights inside the `distillmos` wheel): a convolutional front end and a "
        "transformer distilled from a wav2vec 2.0 XLS-R based quality model, so "
        "derived from an SSL model, not one itself; its MOS head judges nothing "
        "here (DNSMOS does).",
        "",
    ]
    if any(not _curves(results, v) for v in variants):
        lines += [
            "Variants whose runs' folders are gone (the first study's, on another "
            "machine) are reported from the per-utterance scores and minutes that "
            "report archived (`utterances.csv`, `runs.csv`); it kept no curves, so "
            "their validation-curve cells are the earlier report's, and their "
            "curves and spectrograms are in the figures kept from it "
            "(`valid_curves_first_study.png`, `spectrograms_first_study.png`). "
            "Reports now also archive the curves (`curves.json`).",
            "",
        ]
    titles = {
        "voicebank": "VoiceBank-DEMAND test (real pairs)",
        "synthetic": "synthetic: unseen speakers x unseen noise files",
        "dns": "DNS synthetic test pairs",
        "real": "real recordings (DNSMOS, no reference)",
    }
    for name in sets:
        mine = [r for r in rows if r["set"] == name]
        if not mine:
            continue
        header = [m.upper().replace("_", "-") for m in columns[name]]
        lines += [
            f"## {titles[name]} ({mine[0]['utterances']} utterances)",
            "",
            "| system | " + " | ".join(header) + " |",
            "|---" * (len(header) + 1) + "|",
        ]
        lines.append(
            "| noisy | "
            + " | ".join(
                f"{_mean_sd([r[f'noisy_{m}'] for r in mine])[0]:.3f}"
                for m in columns[name]
            )
            + " |"
        )
        for variant in variants:
            cells = []
            for metric in columns[name]:
                values = [
                    r[f"enhanced_{metric}"] for r in mine if r["variant"] == variant
                ]
                if len(values) > 1:
                    cells.append("%.3f ± %.3f" % _mean_sd(values))
                else:
                    cells.append(f"{values[0]:.3f} (1 seed)" if values else "–")
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Paired differences (same seed, same utterances), 95 % bootstrap interval "
        "over seeds and utterances",
        "",
    ]
    if from_archive:
        lines += [
            "Runs of an earlier study whose folders are gone ("
            + ", ".join(f"{v} s{s}" for v, s in sorted(from_archive))
            + ") are rebuilt from its archived scores."
        ]
    for (variant, seed), utterances in sorted(earlier.items()):
        if (variant, seed) not in results:
            continue
        old, new = (
            {
                u["id"]: float(u["enhanced_pesq"])
                for u in rows
                if u["set"] == "voicebank"
            }
            for rows in [utterances, results[(variant, seed)][0]]
        )
        shared = sorted(set(old) & set(new))
        lines += [
            f"The rerun of {variant} s{seed} does not reproduce the archived run "
            "(VoiceBank-DEMAND PESQ "
            f"{statistics.mean(old[i] for i in shared):.3f} archived, "
            f"{statistics.mean(new[i] for i in shared):.3f} rerun): the "
            "tables use the rerun, and the archived runs are paired with the "
            "archived version, the one they were trained beside."
        ]
    lines += [
        "",
        "| comparison | set | metric | difference | interval |",
        "|---|---|---|---:|---|",
    ]

    for first, second in COMPARISONS:
        if first not in variants or second not in variants:
            continue
        for name in sets:
            for metric in ["dnsmos_ovrl"] if name == "real" else COMPARED_METRICS:
                pairs = {}
                for seed in args.seeds:
                    a, b = (
                        {
                            u["id"]: score(u, "enhanced", metric)
                            for u in paired_utterances(
                                results, key, partner, first_study, earlier
                            )
                            if u["set"] == name
                        }
                        for key, partner in [
                            ((first, seed), (second, seed)),
                            ((second, seed), (first, seed)),
                        ]
                    )
                    shared = sorted(set(a) & set(b))
                    if shared:
                        pairs[seed] = [(a[i], b[i]) for i in shared]
                if pairs:
                    mean, low, high = bootstrap_difference(pairs)
                    lines.append(
                        f"| {second} − {first} | {name} | {metric} | {mean:+.3f} | "
                        f"[{low:+.3f}, {high:+.3f}] |"
                    )
    lines.append("")
    probes = cm_diagnostics(args, results)
    if probes:
        (out / "stream_probe.json").write_text(json.dumps(probes, indent=1) + "\n")
        lines += [
            "## Does the CM split speech from noise? "
            "A linear probe of the bottleneck streams",
            "",
            "Ridge regression from a stream's features in a frame to the clean "
            "speech's and to the noise's energy (dB) in that frame, "
            "cross-validated over utterances (12 VoiceBank-DEMAND test utterances "
            "x 4 noise recordings no run trained on, 0/5/10 dB; the penalty chosen "
            "per fold by an inner split of the training utterances; "
            "`cmse_speechbrain.diagnostics.stream_probe`). R² per stream, mean ± "
            "sd over seeds: 1 is a stream that encodes a source's energy linearly, "
            "0 one that tells no more than the mean. The control's row is its "
            "attended bottleneck features, where the CM has its two streams.",
            "",
            "| model | stream | R² speech energy | R² noise energy | speech − noise |",
            "|---|---|---:|---:|---:|",
        ]
        groups = {}
        for run, streams in probes.items():
            for stream, values in streams.items():
                groups.setdefault((run.rsplit("_s", 1)[0], stream), []).append(values)
        for (variant, stream), values in groups.items():
            speech = _mean_sd([v["speech_r2"] for v in values])
            noise = _mean_sd([v["noise_r2"] for v in values])
            gap = _mean_sd([v["speech_r2"] - v["noise_r2"] for v in values])
            lines.append(
                f"| {variant} | {stream} | {speech[0]:.3f} ± {speech[1]:.3f} | "
                f"{noise[0]:.3f} ± {noise[1]:.3f} | {gap[0]:+.3f} ± {gap[1]:.3f} |"
            )
        lines.append("")
    lines += [
        "Figures: `valid_curves.png` (validation quality, every run thin "
        "and the mean over seeds bold), `spectrograms.png` (one "
        "utterance, every variant), `cm_gate.png` (the CM gate over time "
        "and channels against the clean speech); `listening/index.html` "
        "(not in git: players, spectrograms and scores of every variant "
        "on the VoiceBank-DEMAND test pairs, written by this command).",
        "",
    ]
    (out / "ablation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    if any(not (out / "runs" / f"{v}_s{s}").exists() for v, s in results):
        # archived runs: the figures drawn from run folders and curves lose
        # them, so the earlier figures are kept once, as *_first_study.png
        for name in ["spectrograms", "valid_curves"]:
            kept = out / f"{name}_first_study.png"
            if (out / f"{name}.png").exists() and not kept.exists():
                shutil.copy(out / f"{name}.png", kept)
    plot_spectrograms(args, results, out / "spectrograms.png")
    write_listening_page(args, variants)
    from common import pyplot

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = dict(zip(variants, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for variant in variants:
        curves = _curves(results, variant)
        if not curves:
            continue
        for curve in curves:  # each seed, thin
            ax.plot(
                [args.steps_per_epoch * (i + 1) for i in range(len(curve))],
                curve,
                color=colours[variant],
                alpha=0.3,
                linewidth=0.8,
            )
        length = min(len(c) for c in curves) if curves else 0
        mean = [sum(c[i] for c in curves) / len(curves) for i in range(length)]
        ax.plot(
            [args.steps_per_epoch * (i + 1) for i in range(length)],
            mean,
            color=colours[variant],
            marker=".",
            linewidth=2,
            label=f"{variant} (mean of {len(curves)})",
        )
    ax.set_xlabel("training steps")
    ax.set_ylabel("validation quality (0.5 PESQ' + 0.5 STOI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "valid_curves.png", dpi=80)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS)
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--steps", type=int, default=3000, help="training steps of every run"
    )
    parser.add_argument(
        "--steps-per-epoch", type=int, default=250, help="steps between validations"
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--segment", type=float, default=2.0, help="seconds per training crop"
    )
    parser.add_argument(
        "--warmup", type=int, default=100, help="lr warm-up = CM/CR start (steps)"
    )
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="threads per run")
    parser.add_argument(
        "--data", type=pathlib.Path, default=ROOT.parent / "shared" / "data"
    )
    parser.add_argument(
        "--out", type=pathlib.Path, default=ROOT / "reports" / "ablation"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the report from runs"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    shared = args.out / "data"
    todo = [
        (v, s) for s in args.seeds for v in args.variants if not finished(args, v, s)
    ]
    if not args.report_only:
        prepare(args, shared)
        running = {}
        while todo or running:
            while todo and len(running) < args.jobs:
                ready = [run for run in todo if waiting_for(args, *run) is None]
                if not ready:
                    break
                variant, seed = ready[0]
                todo.remove((variant, seed))
                # finished by another launcher meanwhile
                if finished(args, variant, seed):
                    continue
                folder, process = launch(args, variant, seed, shared)
                running[(variant, seed)] = (folder, process, time.time())
                print(f"started {variant} seed {seed}", flush=True)
            for key, (folder, process, start) in list(running.items()):
                if process.poll() is not None:
                    del running[key]
                    status = (
                        "done"
                        if process.returncode == 0
                        else f"FAILED ({process.returncode})"
                    )
                    print(
                        f"{key[0]} seed {key[1]}: {status} after "
                        f"{(time.time() - start) / 60:.1f} min "
                        f"(log: {folder / 'stdout.log'})",
                        flush=True,
                    )
            if todo and not running and all(waiting_for(args, *run) for run in todo):
                missing = sorted(
                    {f"{waiting_for(args, *run)}_s{run[1]}" for run in todo}
                )
                sys.exit(
                    f"cannot start {todo}: they need the finished runs {missing}"
                    " (add their variants to --variants)"
                )
            time.sleep(5)
    results, seconds, from_archive = {}, {}, set()
    archive, archived_seconds, earlier = archived_runs(args.out)
    for variant in args.variants:
        for seed in args.seeds:
            folder = args.out / "runs" / f"{variant}_s{seed}"
            if finished_folder(folder):  # runs still training are left out
                results[(variant, seed)] = read_run(args, folder)
                seconds[(variant, seed)] = training_seconds(folder)
            elif (variant, seed) in archive and not folder.exists():
                results[(variant, seed)] = archive[(variant, seed)]
                from_archive.add((variant, seed))
                seconds[(variant, seed)] = archived_seconds.get(
                    (variant, seed), float("nan")
                )
    earlier.update(superseded_runs(archive, results))
    # the runs trained beside the superseded versions (the earlier study's),
    # kept for later reports, where the reruns may be archived runs too
    first_path = args.out / "first_study_runs.json"
    if first_path.exists():
        first_study = {tuple(k) for k in json.loads(first_path.read_text("utf-8"))}
    else:
        first_study = set(from_archive) if earlier else set()
        if first_study:
            first_path.write_text(json.dumps(sorted(first_study)) + "\n", "utf-8")
    report(args, results, seconds, from_archive, earlier, first_study)


if __name__ == "__main__":
    main()
