#!/usr/bin/env python3
"""CMCR-Net against the denoisers a user could install instead.

Systems (``--systems`` picks a subset, in this order):

* ``noisy``: the input, untouched;
* our model(s): ``--model NAME=FOLDER`` (repeatable; default
  ``cmcr-net=<the shipped model>``), loaded with ``EnhanceCMCR``;
* ``deepfilternet3``, ``rnnoise``, ``noisereduce``: the adapters of
  :mod:`cmse_speechbrain.peers` (optional extra ``peers``).

Sets (from ``--data``, the real-audio folder):

* ``voicebank-demand``: the 33 real VoiceBank-DEMAND test pairs;
* ``dns-synthetic``: the 3 DNS-Challenge synthetic test pairs;
* ``--paired NAME=FOLDER`` (repeatable): a folder with ``clean/`` and
  ``noisy/`` subfolders of same-named files;
* ``real-recordings``: the 9 noisy recordings without reference
  (``real_noisy/*``, ``dns_synthetic/noisy_no_reference/*``), for DNSMOS;
* ``asr-<condition>``: the pocketsphinx mixtures of ``benchmarks/asr_wer.py``
  (0, 5, 10 dB and its real babble recording): WER of what each system
  outputs (``wer``) and of ``w * enhanced + (1 - w) * noisy`` (``wer_mix<w>``).

Metrics: PESQ-WB, STOI, ESTOI, CSIG, CBAK, COVL, SSNR, SI-SDR and the
residual noise (noise attenuation in the speech pauses and speech-level
change, in dB: ``cmse_speechbrain.metrics.pause_attenuation``) on the pairs
(``cmse_speechbrain.evaluation.score_pair``; every system's output is aligned with
its input, the peers' delays removed by their adapters); DNSMOS SIG/BAK/OVRL
on the pairs (one more DNSMOS call per output; ``--no-pair-dnsmos``: not)
and on the recordings; WER; real-time factor on ``--threads`` threads
(processing seconds / audio seconds over the VoiceBank-DEMAND set; building
a native denoiser state, which the adapters redo per utterance, is not
counted).
Means with 95 % bootstrap confidence intervals over utterances (WER and RTF:
pooled ratios, resampled by utterance).

Run (from the repository root; about 40 minutes on 2 CPU cores, most of it
pocketsphinx; ``--no-wer``: about 5)::

    python benchmarks/peers.py --data /work/shared/data

Writes, under ``--output`` (default ``benchmarks/results``): ``peers.csv``
(one row per system, set and metric: mean, CI, n, the utterances with a
score), ``peers.md`` (the table), ``peers_utterances.csv`` (every
utterance's scores) and ``peers.png``; with ``--report DIR``, a listening page per set
(``DIR/<set>/index.html``: players, spectrograms and metrics of every file
for noisy, each system run now and clean; ``cmse_speechbrain.report``).

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import csv
import hashlib
import importlib.util
import math
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

from cmse_speechbrain.dataio import (
    atomic_output,
    read_audio_checked,
    write_audio_atomic,
)
from cmse_speechbrain.evaluation import METRICS, PAUSE_METRICS, score_pair
from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder
from cmse_speechbrain.peers import PEERS, MetricGANPlusGenerator

from common import RESULTS, machine, pyplot

SAMPLE_RATE = 16000
AUDIO = {".wav", ".flac"}
TABLE_METRICS = {
    "pesq": "PESQ-WB",
    "stoi": "STOI",
    "csig": "CSIG",
    "cbak": "CBAK",
    "covl": "COVL",
}
DNSMOS = {
    "dnsmos_sig": "DNSMOS SIG",
    "dnsmos_bak": "DNSMOS BAK",
    "dnsmos_ovrl": "DNSMOS OVRL",
}
RESIDUAL = {
    "pause_attenuation_db": "pause attenuation dB ↑",
    "speech_level_db": "speech level dB",
}
QUICK = {"pairs": 2, "recordings": 1}


def named_folders(values, option):
    """``["NAME=FOLDER", ...]`` -> ``{NAME: Path}``, with errors naming the option."""
    folders = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise SystemExit(f"{option} {value!r}: expected NAME=FOLDER")
        if name in folders:
            raise SystemExit(f"{option} {value!r}: the name {name} is given twice")
        folders[name] = pathlib.Path(folder)
    return folders


def audio_files(folder):
    """{stem: path} of the audio files directly in ``folder``."""
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in AUDIO}


def paired_set(folder):
    """[(id, noisy path, clean path)] of a folder with clean/ and noisy/."""
    noisy_dir, clean_dir = folder / "noisy", folder / "clean"
    for sub in (noisy_dir, clean_dir):
        if not sub.is_dir():
            raise SystemExit(
                f"{sub}: no such folder (a paired set needs clean/ and noisy/)"
            )
    noisy, clean = audio_files(noisy_dir), audio_files(clean_dir)
    if not noisy:
        raise SystemExit(f"{noisy_dir}: no audio files")
    unpaired = sorted(set(noisy) ^ set(clean))
    if unpaired:
        raise SystemExit(
            f"{folder}: files without a twin in clean/ or noisy/: {unpaired[:5]}"
        )
    return [(stem, noisy[stem], clean[stem]) for stem in noisy]


def recordings(data):
    """[(id, path)] of the real noisy recordings without a clean reference."""
    files = []
    for sub in ("real_noisy", "dns_synthetic/noisy_no_reference"):
        folder = data / sub
        if not folder.is_dir():
            raise SystemExit(f"{folder}: no such folder")
        files += list(audio_files(folder).items())
    return files


class Timed:
    """An enhancer whose ``enhance_batch`` is timed and remembers its outputs.

    ``seconds``: processing time (less any native state building the
    adapter reports in ``setup_seconds``). With ``remember`` on, a repeated
    input is answered from memory, so the two ASR variants enhance once.
    """

    def __init__(self, enhancer):
        self.enhancer = enhancer
        self.sample_rate = enhancer.sample_rate
        self.seconds = 0.0
        self.remember = False
        self.memory = {}

    def enhance_batch(self, wavs, lengths=None):
        key = None
        if self.remember:
            lens = b"" if lengths is None else lengths.cpu().numpy().tobytes()
            key = (
                hashlib.sha1(wavs.cpu().numpy().tobytes() + lens).hexdigest(),
                tuple(wavs.shape),
            )
            if key in self.memory:
                return self.memory[key]
        setup = getattr(self.enhancer, "setup_seconds", 0.0)
        start = time.perf_counter()
        enhanced = self.enhancer.enhance_batch(wavs, lengths)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed - (getattr(self.enhancer, "setup_seconds", 0.0) - setup)
        if key is not None:
            self.memory[key] = enhanced
        return enhanced


def load_systems(args):
    """{name: Timed enhancer, or None for the noisy pass-through}."""
    models = named_folders(
        args.model or [f"cmcr-net={shipped_model_folder()}"], "--model"
    )
    available = ["noisy", *models, *PEERS]
    if getattr(args, "metricgan", None):
        available.append("metricgan+")
    chosen = args.systems or available
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise SystemExit(f"--systems: unknown {unknown}; available: {available}")
    systems = {}
    for name in available:
        if name not in chosen:
            continue
        if name == "noisy":
            systems[name] = None
        elif name in models:
            systems[name] = Timed(EnhanceCMCR.from_hparams(source=str(models[name])))
        elif name == "metricgan+":
            generator = MetricGANPlusGenerator()
            generator.load_state_dict(
                torch.load(args.metricgan, map_location="cpu", weights_only=True)
            )
            systems[name] = Timed(
                EnhanceCMCR(
                    modules={"enhance_model": generator.eval()},
                    hparams={"sample_rate": SAMPLE_RATE},
                )
            )
        else:
            try:
                systems[name] = Timed(PEERS[name]())
            except ImportError as error:
                raise SystemExit(f"--systems {name}: {error}") from None
        # warm up (first-call costs), then reset the clock
        if systems[name] is not None:
            warm_up = torch.randn(
                1, SAMPLE_RATE, generator=torch.Generator().manual_seed(0)
            )
            systems[name].enhance_batch(warm_up * 0.01)
            systems[name].seconds = 0.0
        print(f"loaded {name}", flush=True)
    return systems


def enhance(system, wav, name, utt_id):
    """The output of a system (None: pass-through) for one [samples] signal."""
    if system is None:
        return wav
    out = system.enhance_batch(wav.unsqueeze(0), torch.tensor([1.0]))[0].cpu().float()
    if out.shape != wav.shape:
        raise RuntimeError(
            f"{utt_id}: {name} returned {tuple(out.shape)} for {tuple(wav.shape)}"
        )
    if not torch.isfinite(out).all():
        raise RuntimeError(f"{utt_id}: {name} returned NaN or infinite samples")
    return out


def keep_output(audio_dir, set_name, name, utt_id, enhanced):
    """Writes a system's output for the listening page (if ``audio_dir``)."""
    if audio_dir is not None:
        write_audio_atomic(
            audio_dir / set_name / name / f"{utt_id}.wav",
            enhanced,
            SAMPLE_RATE,
            "FLOAT",
        )


def score_paired(systems, set_name, pairs, rows, audio_dir=None, dnsmos=False):
    """Intrusive metrics of every system on ``pairs`` (and DNSMOS); RTF inputs too.

    The systems' outputs are aligned with their inputs (``enhance``), as the
    residual-noise metrics need: they compare the output with the noisy input
    frame by frame in the clean reference's pauses.
    """
    from cmse_speechbrain.metrics import dnsmos_scores

    signals = [
        (i, read_audio_checked(n, SAMPLE_RATE), read_audio_checked(c, SAMPLE_RATE))
        for i, n, c in pairs
    ]
    for name, system in systems.items():
        start = time.time()
        for utt_id, noisy, clean in signals:
            before = system.seconds if system else 0.0
            enhanced = enhance(system, noisy, name, utt_id)
            if system is not None:
                keep_output(audio_dir, set_name, name, utt_id, enhanced)
            row = {
                "set": set_name,
                "system": name,
                "id": utt_id,
                "audio_seconds": noisy.numel() / SAMPLE_RATE,
                "process_seconds": (system.seconds - before) if system else 0.0,
            }
            row.update(score_pair(clean, enhanced, SAMPLE_RATE, noisy=noisy))
            if dnsmos:
                row.update(
                    {
                        f"dnsmos_{k}": v
                        for k, v in dnsmos_scores(enhanced, SAMPLE_RATE).items()
                    }
                )
            rows.append(row)
        mine = [r for r in rows if r["set"] == set_name and r["system"] == name]
        pauses = [
            r["pause_attenuation_db"]
            for r in mine
            if math.isfinite(r["pause_attenuation_db"])
        ]
        print(
            f"{set_name:>18} {name:>15}: PESQ "
            f"{np.nanmean([r['pesq'] for r in mine]):.3f} STOI "
            f"{np.nanmean([r['stoi'] for r in mine]):.3f} pause attenuation "
            f"{np.mean(pauses) if pauses else math.nan:.1f} dB ({len(pauses)} "
            f"with pauses) ({len(mine)} utt, {time.time() - start:.0f} s)",
            flush=True,
        )


def score_recordings(systems, files, rows, audio_dir=None):
    """DNSMOS of every system on the recordings without reference."""
    from cmse_speechbrain.metrics import dnsmos_scores

    signals = [(i, read_audio_checked(p, SAMPLE_RATE)) for i, p in files]
    for name, system in systems.items():
        start = time.time()
        for utt_id, noisy in signals:
            enhanced = enhance(system, noisy, name, utt_id)
            if system is not None:
                keep_output(audio_dir, "real-recordings", name, utt_id, enhanced)
            scores = dnsmos_scores(enhanced, SAMPLE_RATE)
            rows.append(
                {
                    "set": "real-recordings",
                    "system": name,
                    "id": utt_id,
                    "audio_seconds": noisy.numel() / SAMPLE_RATE,
                    **{f"dnsmos_{k}": v for k, v in scores.items()},
                }
            )
        mine = [
            r for r in rows if r["set"] == "real-recordings" and r["system"] == name
        ]
        print(
            f"{'real-recordings':>18} {name:>15}: DNSMOS OVRL "
            f"{np.mean([r['dnsmos_ovrl'] for r in mine]):.3f} "
            f"({len(mine)} recordings, {time.time() - start:.0f} s)",
            flush=True,
        )


def score_asr(systems, args, rows):
    """pocketsphinx WER of every system's output (and of the noisy mix-back)."""
    from speechbrain.utils.edit_distance import wer_details_for_batch

    from cmse_speechbrain.asr import EnhancedASR
    from cmse_speechbrain.recognizers import PocketSphinxASR

    from asr_wer import build_conditions, word_error_rate

    recogniser = PocketSphinxASR()
    mix = f"wer_mix{args.mix_weight:g}"

    def run(pipeline, utterances, condition, name):
        log = []
        word_error_rate(pipeline, utterances, log, condition, name)
        details = wer_details_for_batch(
            [r[2] for r in log],
            [r[3].split() for r in log],
            [r[4].split() for r in log],
        )
        return {
            r[2]: (d["num_edits"], d["num_ref_tokens"], r[4])
            for r, d in zip(log, details)
        }

    conditions = build_conditions(args.data, args.snrs, args.seed)
    for condition, utterances in conditions.items():
        names = ["noisy"] if condition == "clean" else list(systems)
        set_name = f"asr-{condition.replace(' ', '-')}"
        for name in names:
            system = systems.get(name)
            start = time.time()
            if system is not None:
                system.remember, system.memory = True, {}
            plain = run(EnhancedASR(system, recogniser), utterances, condition, name)
            mixed = plain
            if system is not None:
                mixed = run(
                    EnhancedASR(system, recogniser, mix_weight=args.mix_weight),
                    utterances,
                    condition,
                    name,
                )
                system.remember, system.memory = False, {}
            for utt_id, wav, _ in utterances:
                rows.append(
                    {
                        "set": set_name,
                        "system": name,
                        "id": utt_id,
                        "audio_seconds": wav.numel() / SAMPLE_RATE,
                        "wer_errors": plain[utt_id][0],
                        "words": plain[utt_id][1],
                        f"{mix}_errors": mixed[utt_id][0],
                        "hypothesis": plain[utt_id][2],
                        "hypothesis_mix": mixed[utt_id][2],
                    }
                )
            mine = [r for r in rows if r["set"] == set_name and r["system"] == name]
            words = sum(r["words"] for r in mine)
            print(
                f"{set_name:>18} {name:>15}: WER "
                f"{100 * sum(r['wer_errors'] for r in mine) / words:6.2f} %, {mix} "
                f"{100 * sum(r[f'{mix}_errors'] for r in mine) / words:6.2f} % "
                f"({len(mine)} utt, {words} words, {time.time() - start:.0f} s)",
                flush=True,
            )


def bootstrap(numerator, denominator=None, resamples=1000, seed=0):
    """Mean (or ratio of sums) and its 95 % percentile bootstrap interval.

    Example
    -------
    >>> mean, low, high = bootstrap(np.arange(10.0))
    >>> mean, bool(low < mean < high)
    (4.5, True)
    """
    numerator = np.asarray(numerator, dtype=float)
    keep = np.isfinite(numerator)
    denominator = (
        np.ones_like(numerator)
        if denominator is None
        else np.asarray(denominator, float)
    )
    numerator, denominator = numerator[keep], denominator[keep]
    if numerator.size == 0:
        return math.nan, math.nan, math.nan
    value = numerator.sum() / denominator.sum()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, numerator.size, size=(resamples, numerator.size))
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = numerator[picks].sum(1) / denominator[picks].sum(1)
    low, high = np.nanpercentile(stats, [2.5, 97.5])
    return float(value), float(low), float(high)


def summarize(rows, systems, args):
    """One row per system, set and metric: mean, 95 % CI, n."""
    summary = []
    sets = list(dict.fromkeys(r["set"] for r in rows))
    mix = f"wer_mix{args.mix_weight:g}"
    for set_name in sets:
        for name in systems:
            mine = [r for r in rows if r["set"] == set_name and r["system"] == name]
            if not mine:
                continue
            stats = {}  # metric: (mean, low, high, n)

            def mean_of(metric):  # over the utterances with a finite score
                values = np.array([r.get(metric, math.nan) for r in mine], dtype=float)
                return (
                    *bootstrap(values, seed=args.seed),
                    int(np.isfinite(values).sum()),
                )

            if "pesq" in mine[0]:
                for metric in [*METRICS, *PAUSE_METRICS]:
                    stats[metric] = mean_of(metric)
                if set_name == "voicebank-demand" and name != "noisy":
                    stats["rtf"] = (
                        *bootstrap(
                            [r["process_seconds"] for r in mine],
                            [r["audio_seconds"] for r in mine],
                            seed=args.seed,
                        ),
                        len(mine),
                    )
            if "dnsmos_ovrl" in mine[0]:
                for metric in DNSMOS:
                    stats[metric] = mean_of(metric)
            if "wer_errors" in mine[0]:
                words = [r["words"] for r in mine]
                for metric in ("wer", mix):
                    value = bootstrap(
                        [r[f"{metric}_errors"] for r in mine], words, seed=args.seed
                    )
                    stats[metric] = (*(100 * v for v in value), len(mine))
            for metric, (mean, low, high, n) in stats.items():
                if n:  # e.g. no utterance of the set has a pause: no row
                    summary.append(
                        {
                            "system": name,
                            "set": set_name,
                            "metric": metric,
                            "n": n,
                            "mean": mean,
                            "ci_low": low,
                            "ci_high": high,
                        }
                    )
    return summary


SET_TITLES = {
    "voicebank-demand": "VoiceBank-DEMAND test",
    "dns-synthetic": "DNS synthetic",
    "real-recordings": "real recordings",
}
LOWER_IS_BETTER = {"rtf"}


def metric_title(metric):
    if metric in TABLE_METRICS or metric in DNSMOS:
        return {**TABLE_METRICS, **DNSMOS}[metric] + " ↑"
    if metric in RESIDUAL:
        return RESIDUAL[metric]
    if metric == "rtf":
        return "RTF ↓"
    if metric.startswith("wer_mix"):
        return f"WER % (mix {metric[7:]} noisy) ↓"
    return "WER % ↓"


def markdown(summary, systems, args, seconds):
    """The table: one row per set and metric, one column per system."""
    shown = [
        *TABLE_METRICS,
        *DNSMOS,
        *RESIDUAL,
        "wer",
        f"wer_mix{args.mix_weight:g}",
        "rtf",
    ]
    cells = {(r["system"], r["set"], r["metric"]): r for r in summary}
    sets = list(dict.fromkeys(r["set"] for r in summary if r["set"] != "asr-clean"))
    first = ["voicebank-demand", "dns-synthetic"]
    sets.sort(
        key=lambda s: (
            s.startswith("asr-"),
            s == "real-recordings",
            first.index(s) if s in first else len(first),
        )
    )
    lines = [
        "| set (utterances) | metric | " + " | ".join(systems) + " |",
        "|---|---|" + "---:|" * len(systems),
    ]
    for set_name in sets:
        for metric in shown:
            found = [cells.get((name, set_name, metric)) for name in systems]
            if not any(found):
                continue
            n = next(c["n"] for c in found if c)
            values = [c["mean"] if c else math.nan for c in found]
            finite = [v for v in values if math.isfinite(v)]
            if not finite:
                continue
            best = (
                min if metric in LOWER_IS_BETTER or metric.startswith("wer") else max
            )(finite)
            if (
                metric.startswith("wer")
                and len(set(finite)) == 1
                or metric == "speech_level_db"
            ):
                best = None  # speech level: 0 dB is right, no direction is better
            text = []
            for value in values:
                cell = (
                    "–"
                    if not math.isfinite(value)
                    else (
                        f"{value:.3f}"
                        if metric in ("stoi", "rtf")
                        else f"{value:.1f}"
                        if metric.startswith("wer") or metric in RESIDUAL
                        else f"{value:.2f}"
                    )
                )
                text.append(
                    f"**{cell}**" if value == best and len(finite) > 1 else cell
                )
            title = SET_TITLES.get(set_name, set_name)
            if set_name.startswith("asr-"):
                title = "ASR mixtures " + set_name[4:].replace("-", " ")
            lines.append(
                f"| {title} ({n}) | {metric_title(metric)} | " + " | ".join(text) + " |"
            )
    notes = [
        "",
        "Means over utterances (95 % bootstrap intervals in `peers.csv`); best "
        "in bold. WER: pocketsphinx, pooled over the `asr_wer.py` mixtures; "
        f"`mix {args.mix_weight:g}` hears {args.mix_weight:g} × output + "
        f"{1 - args.mix_weight:g} × noisy (for `noisy` both rows are the noisy "
        "WER). RTF: processing / audio seconds on the VoiceBank-DEMAND set, "
        f"{args.threads} threads, native state building excluded.",
        "Residual noise, from the clean reference: pause attenuation = noisy / "
        "output power in the clean speech's pauses (0 dB for noisy; larger: less "
        "residual noise), speech level = output / clean power in its speech (0 "
        "dB: kept; negative: speech attenuated with the noise; not in bold), each "
        "over the utterances that have pauses / speech (their number in brackets).",
    ]
    clean = cells.get(("noisy", "asr-clean", "wer"))
    if clean:
        notes.append(f"pocketsphinx on the clean speech: WER {clean['mean']:.1f} %.")
    notes.append(
        f"Machine: {machine()}. Run took {seconds / 60:.0f} min"
        + (" (--quick)." if args.quick else ".")
    )
    if args.reuse:
        notes.append(
            "With --reuse: this run scored "
            + (", ".join(args.sets) if args.sets else "every set")
            + " for "
            + ", ".join(args.systems or systems)
            + "; the other rows come from earlier runs on the same data and seed."
        )
    return "\n".join(lines + notes) + "\n"


def plot(summary, systems, mix, path):
    """PESQ per set, DNSMOS, WER against SNR and RTF, one colour per system."""
    plt = pyplot()
    if plt is None:
        return False
    colours = {name: f"C{k}" for k, name in enumerate(systems)}
    cells = {(r["system"], r["set"], r["metric"]): r for r in summary}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))

    def bars(ax, groups, metric_of, set_of, ylabel, title):
        width = 0.8 / len(systems)
        for k, name in enumerate(systems):
            xs, ys, errs = [], [], [[], []]
            for g, group in enumerate(groups):
                cell = cells.get((name, set_of(group), metric_of(group)))
                if cell and math.isfinite(cell["mean"]):
                    xs.append(g + k * width)
                    ys.append(cell["mean"])
                    errs[0].append(cell["mean"] - cell["ci_low"])
                    errs[1].append(cell["ci_high"] - cell["mean"])
            ax.bar(xs, ys, width, yerr=errs, capsize=2, color=colours[name], label=name)
        ax.set_xticks(
            [g + 0.4 - width / 2 for g in range(len(groups))],
            groups,
            fontsize=8,
            rotation=10,
        )
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)

    paired = [
        s
        for s in dict.fromkeys(r["set"] for r in summary)
        if any(
            math.isfinite(cells[(n, s, "pesq")]["mean"])
            for n in systems
            if (n, s, "pesq") in cells
        )
    ]
    bars(
        axes[0, 0],
        paired,
        lambda g: "pesq",
        lambda g: g,
        "PESQ-WB",
        "PESQ on paired test sets (95 % CI)",
    )
    axes[0, 0].set_ylim(1.0, None)
    fig.legend(
        *axes[0, 0].get_legend_handles_labels(),
        loc="upper center",
        ncol=len(systems),
        frameon=False,
    )
    bars(
        axes[0, 1],
        ["SIG", "BAK", "OVRL"],
        lambda g: f"dnsmos_{g.lower()}",
        lambda g: "real-recordings",
        "DNSMOS",
        "DNSMOS on real recordings without reference",
    )
    axes[0, 1].set_ylim(1.0, None)

    ax = axes[1, 0]
    by_snr = {}
    for set_name in {r["set"] for r in summary}:
        try:
            by_snr[float(set_name.removeprefix("asr-").removesuffix("dB"))] = set_name
        except ValueError:
            pass
    snrs = sorted(by_snr)
    snr_sets = [by_snr[snr] for snr in snrs]
    if snr_sets:
        for name in systems:
            for metric, style in (("wer", "-"), (mix, "--")):
                if name == "noisy" and metric == mix:
                    continue  # the same as its output
                ys = [
                    cells[(name, s, metric)]["mean"]
                    if (name, s, metric) in cells
                    else math.nan
                    for s in snr_sets
                ]
                ax.plot(snrs, ys, style, marker="o", color=colours[name])
        ax.set_xticks(snrs)
        ax.set_xlabel("SNR (dB)")
        ax.set_ylabel("WER (%)")
        ax.set_title("pocketsphinx WER (solid: output; dashed: mixed with noisy)")
        ax.grid(alpha=0.3)
    else:
        ax.text(
            0.5, 0.5, "WER not run", ha="center", va="center", transform=ax.transAxes
        )
        ax.set_axis_off()

    ax = axes[1, 1]
    timed = [n for n in systems if (n, "voicebank-demand", "rtf") in cells]
    if timed:
        rtfs = [cells[(n, "voicebank-demand", "rtf")] for n in timed]
        errors = [
            [c["mean"] - c["ci_low"] for c in rtfs],
            [c["ci_high"] - c["mean"] for c in rtfs],
        ]
        ax.barh(
            timed,
            [c["mean"] for c in rtfs],
            color=[colours[n] for n in timed],
            xerr=errors,
        )
        for k, c in enumerate(rtfs):
            ax.text(c["ci_high"], k, f" {c['mean']:.3f}", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("real-time factor (lower is faster)")
        ax.set_title("speed on the VoiceBank-DEMAND set (CPU)")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlim(0, max(c["ci_high"] for c in rtfs) * 1.25)
    else:
        ax.set_axis_off()
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    with atomic_output(path) as partial:
        fig.savefig(partial, dpi=80, format="png")
    plt.close(fig)
    return True


def write_csv(path, rows):
    """Rows (dicts, possibly with different keys) to a CSV, atomically."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_output(path) as partial:
        with open(partial, "w", newline="", encoding="utf-8") as fout:
            writer = csv.DictWriter(fout, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


def read_earlier_rows(path):
    """The rows of an earlier run's peers_utterances.csv, numbers parsed."""
    if not path.is_file():
        raise SystemExit(f"--reuse: {path} not found")
    with open(path, encoding="utf-8") as fin:
        earlier = list(csv.DictReader(fin))
    for row in earlier:
        for key, value in list(row.items()):
            # not measured for this row
            if value in ("", None) or value.lower() == "nan":
                del row[key]
            elif key not in ("set", "system", "id", "hypothesis", "hypothesis_mix"):
                row[key] = (
                    int(float(value))
                    if key.endswith("errors") or key == "words"
                    else float(value)
                )
    return earlier


def reuse_rows(earlier, rows, systems):
    """Adds the earlier rows of each (system, set) not scored now (order:
    noisy, the systems run now, then the others). Returns (rows, systems)."""
    scored = {(r["system"], r["set"]) for r in rows}
    earlier = [r for r in earlier if (r["system"], r["set"]) not in scored]
    names = list(dict.fromkeys(list(systems) + [r["system"] for r in earlier]))
    names = ["noisy"] * ("noisy" in names) + [n for n in names if n != "noisy"]
    return rows + earlier, {name: systems.get(name) for name in names}


def write_pages(report_dir, audio_dir, sets, real, systems):
    """A listening page per set: noisy, the systems' kept outputs, clean."""
    from cmse_speechbrain.report import write_report

    names = [name for name, system in systems.items() if system is not None]
    pages = {
        name: ({i: c for i, _, c in pairs}, {i: n for i, n, _ in pairs})
        for name, pairs in sets.items()
    }
    if real:
        pages["real-recordings"] = (None, dict(real))
    for set_name, (clean, noisy) in pages.items():
        outputs = {
            name: {i: audio_dir / set_name / name / f"{i}.wav" for i in noisy}
            for name in names
        }
        done = write_report(
            clean,
            noisy,
            outputs,
            report_dir / set_name,
            title=f"benchmarks/peers.py: {SET_TITLES.get(set_name, set_name)}",
        )
        print(f"listening page: {done['page']}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parents[2] / "shared" / "data",
        help="the real-audio folder (../shared/data)",
    )
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME=FOLDER",
        help="an EnhanceCMCR model folder (repeatable; default: the shipped model)",
    )
    parser.add_argument(
        "--metricgan",
        metavar="CKPT",
        default=None,
        help="weights of a MetricGAN+ generator trained by the RealMix recipe "
        "(--model=!new:cmse_speechbrain.peers.MetricGANPlusGenerator): "
        "adds the system 'metricgan+'",
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        metavar="NAME",
        help="run only these (noisy, the --model names, deepfilternet3, rnnoise, "
        "noisereduce)",
    )
    parser.add_argument(
        "--paired",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="an extra test set: a folder with clean/ and noisy/ (repeatable)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['pairs']} utterances per paired set, {QUICK['recordings']} "
        "recordings, no WER (a smoke test)",
    )
    parser.add_argument(
        "--no-wer", dest="wer", action="store_false", help="skip the ASR part"
    )
    parser.add_argument(
        "--no-pair-dnsmos",
        dest="pair_dnsmos",
        action="store_false",
        help="no DNSMOS on the paired sets (the slowest metric there)",
    )
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.0, 5.0, 10.0])
    parser.add_argument("--mix_weight", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument(
        "--sets",
        nargs="+",
        metavar="NAME",
        help="score only these sets (voicebank-demand, dns-synthetic, the "
        "--paired names, real-recordings, asr)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep, from the output's peers_utterances.csv (same data, seed "
        "and SNRs), the rows of every system and set not scored now, so "
        "that one system or one set can be rerun alone",
    )
    parser.add_argument(
        "--report",
        type=pathlib.Path,
        default=None,
        metavar="DIR",
        help="also write a listening page per set scored (DIR/<set>/index.html): "
        "players, spectrograms and metrics of every file (DNSMOS if installed)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()

    data = args.data
    if not data.is_dir():
        raise SystemExit(f"{data}: no such data folder (give --data)")
    sets = {
        "voicebank-demand": paired_set(data / "voicebank_demand_test"),
        "dns-synthetic": paired_set(data / "dns_synthetic"),
    }
    for name, folder in named_folders(args.paired, "--paired").items():
        if name in sets or name == "real-recordings" or name.startswith("asr-"):
            raise SystemExit(f"--paired {name}: that set name is taken")
        sets[name] = paired_set(folder)
    real = recordings(data)
    if args.quick:
        sets = {k: v[: QUICK["pairs"]] for k, v in sets.items()}
        real = real[: QUICK["recordings"]]
    systems = load_systems(args)
    earlier = (
        read_earlier_rows(args.output / "peers_utterances.csv") if args.reuse else []
    )

    if args.sets:
        known = list(sets) + ["real-recordings", "asr"]
        unknown = [name for name in args.sets if name not in known]
        if unknown:
            raise SystemExit(
                f"--sets {' '.join(unknown)}: unknown (known: {' '.join(known)})"
            )
        sets = {k: v for k, v in sets.items() if k in args.sets}
        real = real if "real-recordings" in args.sets else []
        args.wer = args.wer and "asr" in args.sets

    if args.pair_dnsmos and importlib.util.find_spec("speechmos") is None:
        print(
            "DNSMOS of the paired sets skipped: speechmos is not installed", flush=True
        )
        args.pair_dnsmos = False
    rows = []
    audio_dir = (
        pathlib.Path(tempfile.mkdtemp(prefix="peers-outputs-")) if args.report else None
    )
    try:
        for set_name, pairs in sets.items():
            score_paired(
                systems, set_name, pairs, rows, audio_dir, dnsmos=args.pair_dnsmos
            )
        if real:
            score_recordings(systems, real, rows, audio_dir)
        if args.report:
            write_pages(args.report, audio_dir, sets, real, systems)
    finally:
        if audio_dir is not None:
            shutil.rmtree(audio_dir, ignore_errors=True)
    if args.wer and not args.quick:
        score_asr(systems, args, rows)
    if args.reuse:
        rows, systems = reuse_rows(earlier, rows, systems)

    summary = summarize(rows, systems, args)
    table = markdown(summary, systems, args, time.time() - start)
    write_csv(args.output / "peers.csv", summary)
    write_csv(args.output / "peers_utterances.csv", rows)
    with atomic_output(args.output / "peers.md") as partial:
        partial.write_text(table, encoding="utf-8")
    plotted = plot(
        summary, systems, f"wer_mix{args.mix_weight:g}", args.output / "peers.png"
    )
    print("\n" + table)
    print(
        f"wrote {args.output}/peers.csv, peers_utterances.csv, peers.md"
        + (", peers.png" if plotted else "")
    )
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
