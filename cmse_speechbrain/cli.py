"""Command-line tools: ``cmse-enhance``, ``cmse-evaluate``, ``cmse-export``.

``cmse-enhance INPUT... -o OUTDIR`` enhances files and folders (recursively)
with a model folder (``--source``, default: the model shipped with the
package). A bad file is reported and skipped; the run lists the failures at
the end and exits with status 1 if there was any. Inputs are never
overwritten and every output is written atomically.

``cmse-evaluate --enhanced DIR --clean DIR [--noisy DIR] -o results.csv``
scores enhanced files against their clean references (matched by name):
PESQ-WB, STOI, ESTOI, CSIG/CBAK/COVL, SSNR, SI-SDR, with the noisy input's
scores beside them when ``--noisy`` is given.

``cmse-export RUN_FOLDER MODEL_FOLDER`` turns a training run into a model
folder for ``EnhanceCMCR.from_hparams`` and ``cmse-enhance --source``;
``--torchscript`` and ``--onnx`` add the network on spectra as
``enhance_model.pt`` / ``enhance_model.onnx`` (see ``cmse_speechbrain.export``).

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import csv
import logging
import os
import pathlib
import sys

import torch
from tqdm import tqdm

from cmse_speechbrain.dataio import AUDIO_EXTENSIONS, AudioFileError, atomic_output, read_audio_checked
from cmse_speechbrain.metrics import composite_scores, dnsmos_scores, nanmean, si_sdr, stoi_score

INPUT_EXTENSIONS = AUDIO_EXTENSIONS + (".ogg", ".aiff", ".aif")


def collect_inputs(inputs):
    """(file, path relative to its input root) for files and folders.

    A missing path comes back as (path, None); an unreadable folder as
    (folder, None, problem): both are reported as failures, not raised.
    """
    found = []
    for item in inputs:
        path = pathlib.Path(item)
        if not path.is_dir():
            found.append((path, pathlib.Path(path.name) if path.exists() else None))
            continue
        for folder, subfolders, files in os.walk(path, onerror=lambda e: found.append(
                (pathlib.Path(e.filename), None, f"cannot read folder ({e.strerror})"))):
            subfolders.sort()
            for name in sorted(files):
                file = pathlib.Path(folder) / name
                if file.suffix.lower() in INPUT_EXTENSIONS:
                    found.append((file, file.relative_to(path)))
    return found


def save_spectrogram(noisy, enhanced, sample_rate, path):
    """Writes a PNG of the noisy and enhanced spectrograms (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for ax, signal, title in zip(axes, [noisy, enhanced], ["noisy", "enhanced"]):
        spec = torch.stft(signal, 512, 256, window=torch.hann_window(512), return_complex=True)
        db = 20 * torch.log10(spec.abs() + 1e-6)
        ax.imshow(db.numpy(), origin="lower", aspect="auto", vmin=float(db.max()) - 80,
                  extent=[0, len(signal) / sample_rate, 0, sample_rate / 2000])
        ax.set_title(title)
        ax.set_ylabel("kHz")
    axes[1].set_xlabel("seconds")
    fig.tight_layout()
    with atomic_output(path) as partial:
        fig.savefig(partial, dpi=80, format="png")
    plt.close(fig)


def enhance_main(argv=None):
    """Entry point of ``cmse-enhance``."""
    parser = argparse.ArgumentParser(prog="cmse-enhance", description="Enhance speech files with CMCR-Net.")
    parser.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    parser.add_argument("-o", "--output-dir", required=True, help="folder for the enhanced files")
    parser.add_argument("--source", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--chunk-seconds", type=float, default=None, help="chunk length for long files")
    parser.add_argument("--spectrogram", action="store_true", help="also write a PNG of noisy vs enhanced")
    parser.add_argument("--no-mix-down", action="store_true", help="refuse multi-channel files instead of averaging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder

    source = pathlib.Path(args.source) if args.source else shipped_model_folder()
    overrides = {} if args.chunk_seconds is None else {"chunk_seconds": args.chunk_seconds}
    enhancer = EnhanceCMCR.from_hparams(source=str(source), run_opts={"device": args.device},
                                        overrides=overrides)
    out_dir = pathlib.Path(args.output_dir)
    inputs = collect_inputs(args.inputs)
    input_files = {item[0].resolve() for item in inputs if item[1] is not None}
    failures = []
    for path, relative, *problem in tqdm(inputs, desc="enhancing", unit="file"):
        try:
            if relative is None:
                raise AudioFileError(path, problem[0] if problem else "file not found")
            output = (out_dir / relative).with_suffix(".wav")
            if output.resolve() in input_files:
                raise AudioFileError(path, f"output {output} would overwrite an input")
            enhancer.enhance_file(path, output, mix_down=not args.no_mix_down)
            if args.spectrogram:
                rate = enhancer.sample_rate
                save_spectrogram(read_audio_checked(path, rate), read_audio_checked(output, rate),
                                 rate, output.with_suffix(".png"))
        except (AudioFileError, OSError, RuntimeError, ValueError) as error:
            failures.append((path, str(error)))
    done = len(inputs) - len(failures)
    print(f"enhanced {done} of {len(inputs)} files into {out_dir}")
    if failures:
        print(f"{len(failures)} failed:", file=sys.stderr)
        for path, error in failures:
            print(f"  {path}: {error}", file=sys.stderr)
        return 1
    return 0


METRICS = ["pesq", "stoi", "estoi", "csig", "cbak", "covl", "ssnr", "si_sdr"]


def score_pair(reference, signal, sample_rate=16000):
    """All intrusive metrics of ``signal`` against ``reference`` (tensors)."""
    n = min(reference.numel(), signal.numel())
    reference, signal = reference[:n], signal[:n]
    scores = composite_scores(reference.double().numpy(), signal.double().numpy(), sample_rate)
    scores["stoi"] = stoi_score(signal, reference, sample_rate)
    scores["estoi"] = stoi_score(signal, reference, sample_rate, extended=True)
    scores["si_sdr"] = si_sdr(reference.numpy(), signal.numpy())
    return {k: scores[k] for k in METRICS}


def _by_stem(folder):
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder")
    return {p.stem: p for p in sorted(folder.rglob("*")) if p.suffix.lower() in INPUT_EXTENSIONS}


def _score_file(stem, systems, clean, use_dnsmos):
    row = {"id": stem}
    reference = None
    if clean is not None:
        if stem not in clean:
            raise AudioFileError(systems["enhanced"][stem], f"no clean reference {stem}.*")
        reference = read_audio_checked(clean[stem], 16000)
    for name, files in systems.items():
        if stem not in files:
            raise AudioFileError(systems["enhanced"][stem], f"no {name} file {stem}.*")
        signal = read_audio_checked(files[stem], 16000)
        if reference is not None:
            row.update({f"{name}_{k}": v for k, v in score_pair(reference, signal).items()})
        if use_dnsmos:
            row.update({f"{name}_dnsmos_{k}": v for k, v in dnsmos_scores(signal, 16000).items()})
    return row


def evaluate_main(argv=None):
    """Entry point of ``cmse-evaluate``."""
    parser = argparse.ArgumentParser(prog="cmse-evaluate", description="Score enhanced speech.")
    parser.add_argument("--enhanced", required=True, help="folder of enhanced files")
    parser.add_argument("--clean", default=None, help="folder of clean references (same names)")
    parser.add_argument("--noisy", default=None, help="folder of noisy inputs, scored as the baseline")
    parser.add_argument("--dnsmos", action="store_true",
                        help="also DNSMOS SIG/BAK/OVRL (no reference needed; the dnsmos extra)")
    parser.add_argument("-o", "--output", required=True, help="per-file CSV")
    args = parser.parse_args(argv)
    if args.clean is None and not args.dnsmos:
        parser.error("give --clean for intrusive metrics, --dnsmos for non-intrusive ones, or both")

    clean = _by_stem(args.clean) if args.clean else None
    systems = {"enhanced": _by_stem(args.enhanced)}
    if args.noisy:
        systems["noisy"] = _by_stem(args.noisy)
    metrics = (METRICS if clean is not None else []) + (
        ["dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"] if args.dnsmos else []
    )
    rows, failures = [], []
    for stem in tqdm(sorted(systems["enhanced"]), desc="scoring", unit="file"):
        try:
            rows.append(_score_file(stem, systems, clean, args.dnsmos))
        except AudioFileError as error:
            failures.append(str(error))
    columns = ["id"] + [f"{name}_{m}" for name in systems for m in metrics]
    with atomic_output(args.output) as partial:
        with open(partial, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    print(f"{len(rows)} files scored -> {args.output}")
    print(f"{'':10s}" + "".join(f"{m.upper():>12s}" for m in metrics))
    for name in systems:
        means = [nanmean([r[f"{name}_{m}"] for r in rows]) for m in metrics]
        print(f"{name:10s}" + "".join(f"{v:12.3f}" for v in means))
    if failures:
        print(f"{len(failures)} files not scored:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    return 0 if rows else 1


def export_main(argv=None):
    """Entry point of ``cmse-export``."""
    parser = argparse.ArgumentParser(prog="cmse-export", description="Export a training run as a model folder.")
    parser.add_argument("run_folder", help="the recipe's output folder (hyperparams.yaml, save/)")
    parser.add_argument("destination", help="model folder to create")
    parser.add_argument("--force", action="store_true", help="replace an existing destination")
    parser.add_argument("--torchscript", action="store_true",
                        help="also write the network on spectra as TorchScript (enhance_model.pt)")
    parser.add_argument("--onnx", action="store_true",
                        help="also write it as ONNX, opset 17 (enhance_model.onnx; needs the onnx package)")
    args = parser.parse_args(argv)
    from cmse_speechbrain.export import export_model, export_network_files

    folder = export_model(args.run_folder, args.destination, overwrite=args.force)
    print(f"model folder written: {folder}")
    if args.torchscript or args.onnx:
        for path in export_network_files(folder, args.torchscript, args.onnx):
            print(f"network written: {path}")
    return 0


