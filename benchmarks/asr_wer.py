#!/usr/bin/env python3
"""Word error rate of an offline recogniser with and without CMCR-Net.

The recogniser is pocketsphinx (its wheel ships a US English model: no
download). Speech: real read sentences with transcripts from the project's
data folder (SpeechBrain's ASR samples, CMU ARCTIC, a Harvard sentence, JFK,
LJ Speech). Noise: real recordings that the shipped enhancer never trained
on (``dude_miaowing``, ``noise5``, ClearerVoice ``ch03_*``: its validation
noise), mixed at the stated SNRs with a seeded segment choice. Plus the one
real noisy recording with a transcript (a Harvard sentence with babble at
0 dB). For every condition the WER (SpeechBrain's ``ErrorRateStats``) of:

* ``clean``: the clean speech;
* ``noisy``: the mixture;
* ``enhanced``: the mixture through the shipped CMCR-Net;
* ``mix<w>``: ``w * enhanced + (1 - w) * noisy``.

Run (from the repository root; about 10 minutes on 2 CPU cores)::

    python benchmarks/asr_wer.py --data /work/shared/data

Writes ``benchmarks/results/asr_wer.csv`` (one row per condition and
variant), ``asr_wer_utterances.csv`` (every hypothesis) and ``asr_wer.png``
(if matplotlib is installed).

**The large set** (``--speechocean-set FOLDER``): the speechocean762 test
set of ``recipes/SpeechOcean762/speechocean_prepare.py`` (1,089 utterances
of 99 test speakers no enhancer here heard, clean and mixed with held-out
real noise at 0, 5 and 10 dB; its real transcripts). Every system of the
peers table (``benchmarks/peers.py``'s ``--model``, ``--metricgan`` and
``--systems``: noisy, this model, RNNoise, DeepFilterNet3, MetricGAN+ when
its weights are given, noisereduce) and, for the CMCR-Net models (or the
``--mix-systems`` named), the mix ``w * enhanced + (1 - w) * noisy``, decoded
by pocketsphinx: WER and CER with 95 % bootstrap intervals over utterances.
Each hypothesis is appended to ``asr_wer_speechocean_utterances.csv`` as it
is made, and a rerun skips what is there, so the job (hours on one core)
resumes where it stopped. It goes utterance by utterance across conditions
and systems, and the summary counts only the utterances every system has
decoded in a condition, so a partial run compares like with like::

    python recipes/SpeechOcean762/speechocean_prepare.py ~/data/speechocean762 \
        ~/data/so762_asr_test
    python benchmarks/asr_wer.py --speechocean-set ~/data/so762_asr_test

It writes ``asr_wer_speechocean.md`` (the table) and ``asr_wer_speechocean.csv``.

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import csv
import pathlib
import sys
import time

import numpy as np
import torch
from speechbrain.utils.metric_stats import ErrorRateStats

from cmse_speechbrain.asr import EnhancedASR
from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder
from cmse_speechbrain.recognizers import PocketSphinxASR, normalize_text

SAMPLE_RATE = 16000
HELD_OUT_NOISES = [
    "noise/dude_miaowing.wav",
    "noise/noise5.wav",
    "noise_ch/ch03_sm001.wav",
    "noise_ch/ch03_sm002.wav",
    "noise_ch/ch03_sm003.wav",
]
# The asr_samples recordings read Harvard sentences (SpeechBrain's
# annotation misspells some words; these are the published sentences).
HARVARD = {
    "spk1_snt1": "the child almost hurt the small dog",
    "spk1_snt2": "drop the two when you add the figures",
    "spk1_snt3": "at that high level the air is pure",
    "spk1_snt4": "a thin stripe runs down the middle",
    "spk1_snt5": "sunday is the best part of the week",
    "spk1_snt6": "the pencils have all been used",
    "spk2_snt1": "we are sure that one war is enough",
    "spk2_snt2": "what joy there is in living",
    "spk2_snt3": "tear a thin sheet from the yellow pad",
    "spk2_snt4": "mend the coat before you go out",
    "spk2_snt5": "jump the fence and hurry up the bank",
    "spk2_snt6": "canned pears lack full flavor",
}


def speech_items(data):
    """(id, path, normalised transcript) of every clean utterance used."""
    items = [(k, data / "asr_samples" / f"{k}.wav", v) for k, v in HARVARD.items()]
    with open(data / "transcribed" / "transcripts.csv", encoding="utf-8") as fin:
        for row in csv.DictReader(fin):
            name = row["file"]
            # noisy: below; flac: same speech
            if "babble" in name or name == "jfk.flac":
                continue
            path = (data / "transcribed" / name).resolve()
            items.append((path.stem, path, row["transcript"]))
    with open(data / "ljspeech" / "metadata.csv", encoding="utf-8") as fin:
        for line in fin:
            utt_id, _, normalized = line.rstrip("\n").split("|")
            items.append(
                (utt_id, data / "ljspeech" / "wavs" / f"{utt_id}.wav", normalized)
            )
    return [(i, p, normalize_text(t)) for i, p, t in items]


def mix_at_snr(clean, noise, snr_db, rng):
    """Clean + a random noise segment scaled to ``snr_db`` (noise looped if short)."""
    if len(noise) < len(clean):
        noise = noise.repeat(len(clean) // len(noise) + 1)
    start = int(rng.integers(0, len(noise) - len(clean) + 1))
    segment = noise[start : start + len(clean)]
    gain = torch.sqrt(
        clean.pow(2).mean() / (segment.pow(2).mean() * 10 ** (snr_db / 10))
    )
    noisy = clean + gain * segment
    peak = float(noisy.abs().max())
    return noisy / peak * 0.95 if peak > 0.95 else noisy


def build_conditions(data, snrs, seed):
    """{condition: [(id, noisy or clean waveform, reference)]}."""
    rng = np.random.default_rng(seed)
    noises = [read_audio_checked(data / n, SAMPLE_RATE) for n in HELD_OUT_NOISES]
    speech = [
        (i, read_audio_checked(p, SAMPLE_RATE), t) for i, p, t in speech_items(data)
    ]
    conditions = {"clean": speech}
    for snr in snrs:
        conditions[f"{snr:g}dB"] = [
            (i, mix_at_snr(wav, noises[rng.integers(len(noises))], snr, rng), t)
            for i, wav, t in speech
        ]
    babble = data / "transcribed" / "harvard_speech_babble_0dB.wav"
    conditions["real babble 0dB"] = [
        (
            "harvard_babble",
            read_audio_checked(babble, SAMPLE_RATE),
            normalize_text("the birch canoe slid on the smooth planks"),
        )
    ]
    return conditions


def word_error_rate(pipeline, utterances, log_rows, condition, variant):
    """WER (%) of ``pipeline`` over ``utterances``; appends per-utterance rows."""
    stats = ErrorRateStats()
    for utt_id, wav, reference in utterances:
        hypothesis = normalize_text(
            pipeline.transcribe_batch(wav.unsqueeze(0), torch.tensor([1.0]))[0][0]
        )
        stats.append([utt_id], [hypothesis.split()], [reference.split()])
        log_rows.append([condition, variant, utt_id, reference, hypothesis])
    summary = stats.summarize()
    return summary["WER"], summary["num_scored_tokens"]


def plot(rows, path):
    """Grouped bar chart of WER per condition and variant."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, variant in enumerate(variants):
        xs, ys = [], []
        for c, condition in enumerate(conditions):
            for r in rows:
                if r["condition"] == condition and r["variant"] == variant:
                    xs.append(c + k * width)
                    ys.append(r["wer"])
        ax.bar(xs, ys, width, label=variant)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(conditions))], conditions)
    ax.set_ylabel("WER (%)")
    ax.set_title("pocketsphinx WER, with and without the shipped CMCR-Net")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


SPEECHOCEAN_CONDITIONS = ["clean", "0dB", "5dB", "10dB"]
UTTERANCE_FIELDS = [
    "condition",
    "system",
    "id",
    "reference",
    "hypothesis",
    "word_errors",
    "words",
    "char_errors",
    "chars",
]


def edit_counts(reference, hypothesis):
    """(word edits, reference words, character edits, reference characters);
    characters without spaces.

    Example
    -------
    >>> edit_counts("two six four", "to six four")
    (1, 3, 1, 10)
    """
    from speechbrain.utils.edit_distance import wer_details_for_batch

    words = wer_details_for_batch(["u"], [reference.split()], [hypothesis.split()])[0]
    chars = wer_details_for_batch(
        ["u"], [list(reference.replace(" ", ""))], [list(hypothesis.replace(" ", ""))]
    )[0]
    return (
        words["num_edits"],
        words["num_ref_tokens"],
        chars["num_edits"],
        chars["num_ref_tokens"],
    )


def speechocean_conditions(folder):
    """{condition: [(id, waveform path, normalised transcript)]} of a set
    written by ``speechocean_prepare.py``."""
    import json

    manifest_path = pathlib.Path(folder) / "asr_test.json"
    if not manifest_path.is_file():
        raise SystemExit(
            f"{manifest_path}: missing (run recipes/SpeechOcean762/"
            "speechocean_prepare.py first)"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    conditions = {c: [] for c in SPEECHOCEAN_CONDITIONS}
    for key, entry in sorted(manifest.items()):
        conditions.setdefault(entry["condition"], []).append(
            (key, pathlib.Path(entry["wav"]), normalize_text(entry["words"]))
        )
    return {c: items for c, items in conditions.items() if items}


def model_names(args):
    """The names of the CMCR-Net model folders the run scores (``--model``)."""
    return [spec.split("=", 1)[0] for spec in args.model or ["cmcr-net="]]


def score_speechocean(args):
    """Every system (and its mix with the noisy input) on the speechocean762
    set, resumable; returns the summary rows."""
    from cmse_speechbrain.dataio import atomic_output

    from peers import bootstrap, load_systems

    args.output.mkdir(parents=True, exist_ok=True)
    log_path = args.output / "asr_wer_speechocean_utterances.csv"
    done = {}
    if log_path.is_file():
        with open(log_path, newline="", encoding="utf-8") as fin:
            for row in csv.DictReader(fin):
                done[(row["condition"], row["system"], row["id"])] = row
    new_file = not log_path.is_file()
    conditions = speechocean_conditions(args.speechocean_set)
    systems = load_systems(args)
    recogniser = PocketSphinxASR()
    mix = f"mix{args.mix_weight:g}"
    mixed = set(args.mix_systems or model_names(args))
    names = [n for s in systems for n in ([s, f"{s}+{mix}"] if s in mixed else [s])]
    total = sum(len(u) for c, u in conditions.items()) * len(names)
    # Utterance by utterance across every condition and system, so that a run
    # stopped part-way has decoded the same utterances everywhere.
    order = [
        (condition, utterances[i], system_name)
        for i in range(max(len(u) for u in conditions.values()))
        for condition, utterances in conditions.items()
        if i < len(utterances)
        for system_name in systems
    ]
    with open(log_path, "a", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=UTTERANCE_FIELDS)
        if new_file:
            writer.writeheader()
        start, count = time.time(), 0
        for condition, (utt_id, path, reference), system_name in order:
            wanted = [
                n
                for n in names
                if (n == system_name or n.startswith(system_name + "+"))
                and (condition, n, utt_id) not in done
            ]
            if not wanted:
                continue
            system = systems[system_name]
            wav = read_audio_checked(path, SAMPLE_RATE)
            outputs = {system_name: wav}
            if system is not None:
                enhanced = system.enhance_batch(wav[None], torch.tensor([1.0]))[0].cpu()
                if not torch.isfinite(enhanced).all():
                    raise RuntimeError(
                        f"{path}: {system_name} returned non-finite samples"
                    )
                outputs = {
                    system_name: enhanced,
                    f"{system_name}+{mix}": args.mix_weight * enhanced
                    + (1 - args.mix_weight) * wav,
                }
            for name in wanted:
                hypothesis = normalize_text(
                    recogniser.transcribe_batch(
                        outputs[name][None], torch.tensor([1.0])
                    )[0][0]
                )
                w, nw, c, nc = edit_counts(reference, hypothesis)
                row = {
                    "condition": condition,
                    "system": name,
                    "id": utt_id,
                    "reference": reference,
                    "hypothesis": hypothesis,
                    "word_errors": w,
                    "words": nw,
                    "char_errors": c,
                    "chars": nc,
                }
                writer.writerow(row)
                fout.flush()
                done[(condition, name, utt_id)] = row
                count += 1
                if count % 50 == 0:
                    rate = (time.time() - start) / count
                    print(
                        f"{len(done)} of {total} decoded ({condition}, {name}); "
                        f"{rate:.2f} s each",
                        flush=True,
                    )
    summary = []
    for condition in conditions:
        # Paired: only the utterances every system has decoded in this condition.
        decoded = [
            {u for (c, n, u) in done if c == condition and n == name} for name in names
        ]
        common = set.intersection(*decoded) if decoded else set()
        if not common:
            continue
        for name in names:
            rows = [done[(condition, name, u)] for u in sorted(common)]
            entry = {"condition": condition, "system": name, "utterances": len(rows)}
            for metric, errors, units in [
                ("wer", "word_errors", "words"),
                ("cer", "char_errors", "chars"),
            ]:
                value, low, high = bootstrap(
                    [float(r[errors]) for r in rows],
                    [float(r[units]) for r in rows],
                    seed=args.seed,
                )
                entry.update(
                    {
                        metric: 100 * value,
                        f"{metric}_low": 100 * low,
                        f"{metric}_high": 100 * high,
                    }
                )
            summary.append(entry)
    if not summary:
        print("no utterance has been decoded by every system yet: no summary")
        return summary
    with atomic_output(args.output / "asr_wer_speechocean.csv") as partial:
        with open(partial, "w", newline="", encoding="utf-8") as fcsv:
            writer = csv.DictWriter(fcsv, fieldnames=list(summary[0]))
            writer.writeheader()
            writer.writerows(summary)
    lines = [
        "# pocketsphinx on speechocean762 (held-out "
        "test speakers x held-out real noise)",
        "",
        "Command: `python benchmarks/asr_wer.py --speechocean-set "
        f"{args.speechocean_set}`. WER and CER in %, pooled over utterances, [95 "
        "% bootstrap interval over utterances]; n = the utterances every system has "
        "decoded in that condition so far (the same ones for every system).",
        "",
        "| condition | system | n | WER % | CER % |",
        "|---|---|---:|---:|---:|",
    ]
    for e in summary:
        lines.append(
            f"| {e['condition']} | {e['system']} | {e['utterances']} | "
            f"{e['wer']:.1f} [{e['wer_low']:.1f}, {e['wer_high']:.1f}] | "
            f"{e['cer']:.1f} [{e['cer_low']:.1f}, {e['cer_high']:.1f}] |"
        )
    with atomic_output(args.output / "asr_wer_speechocean.md") as partial:
        partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parents[2] / "shared" / "data",
        help="the real-audio folder (../shared/data)",
    )
    parser.add_argument("--enhancer", type=pathlib.Path, default=shipped_model_folder())
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.0, 5.0, 10.0])
    parser.add_argument("--mix_weight", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--output",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parent / "results",
    )
    parser.add_argument(
        "--speechocean-set",
        type=pathlib.Path,
        default=None,
        metavar="FOLDER",
        help="score every peers-table system on this speechocean762 set "
        "(speechocean_prepare.py's output) instead of the small set",
    )
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME=FOLDER",
        help="with --speechocean-set: an EnhanceCMCR model folder (repeatable; "
        "default: the shipped model)",
    )
    parser.add_argument(
        "--metricgan",
        metavar="CKPT",
        default=None,
        help="with --speechocean-set: MetricGAN+ generator weights (adds metricgan+)",
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        metavar="NAME",
        help="with --speechocean-set: only these systems (as benchmarks/peers.py)",
    )
    parser.add_argument(
        "--mix-systems",
        nargs="+",
        metavar="NAME",
        help="with --speechocean-set: the systems also scored as a mix with the "
        "noisy input (default: the CMCR-Net models)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.speechocean_set is not None:
        return score_speechocean(args)

    recogniser = PocketSphinxASR()
    enhancer = EnhanceCMCR.from_hparams(source=str(args.enhancer))
    variants = {
        "noisy": EnhancedASR(None, recogniser),
        "enhanced": EnhancedASR(enhancer, recogniser),
        f"mix{args.mix_weight:g}": EnhancedASR(
            enhancer, recogniser, mix_weight=args.mix_weight
        ),
    }
    conditions = build_conditions(args.data, args.snrs, args.seed)
    rows, log_rows = [], []
    for condition, utterances in conditions.items():
        names = ["noisy"] if condition == "clean" else list(variants)
        for name in names:
            start = time.time()
            wer, words = word_error_rate(
                variants[name], utterances, log_rows, condition, name
            )
            label = "clean" if condition == "clean" else name
            rows.append(
                {
                    "condition": condition,
                    "variant": label,
                    "wer": wer,
                    "utterances": len(utterances),
                    "words": words,
                }
            )
            print(
                f"{condition:>16} {label:>9}: WER {wer:6.2f} % "
                f"({len(utterances)} utt, {words} words, {time.time() - start:.0f} s)",
                flush=True,
            )
    args.output.mkdir(parents=True, exist_ok=True)
    with open(args.output / "asr_wer.csv", "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(
        args.output / "asr_wer_utterances.csv", "w", newline="", encoding="utf-8"
    ) as fout:
        writer = csv.writer(fout)
        writer.writerow(["condition", "variant", "id", "reference", "hypothesis"])
        writer.writerows(log_rows)
    plotted = plot(rows, args.output / "asr_wer.png")

    print("\n| condition | " + " | ".join(["clean"] + list(variants)) + " |")
    print("|---" * (len(variants) + 2) + "|")
    clean_wer = next(r["wer"] for r in rows if r["condition"] == "clean")
    for condition in conditions:
        if condition == "clean":
            continue
        cells = [
            f"{clean_wer:.1f}"
            if condition.endswith("dB") and condition[0].isdigit()
            else "-"
        ]
        for name in variants:
            cells.append(
                next(
                    f"{r['wer']:.1f}"
                    for r in rows
                    if r["condition"] == condition and r["variant"] == name
                )
            )
        print(f"| {condition} | " + " | ".join(cells) + " |")
    print(
        f"\nwrote {args.output / 'asr_wer.csv'}"
        + (f" and {args.output / 'asr_wer.png'}" if plotted else "")
    )
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
