"""Command-line tools: ``cmse-enhance``, ``cmse-evaluate``, ``cmse-export``,
``cmse-report``.

``cmse-enhance INPUT... -o OUTDIR`` enhances files and folders (recursively)
with a model folder (``--source``, default: the model shipped with the
package; loaded without running code from it unless ``--trust-code``).
Each output is ``OUTDIR/<path relative to its input folder>`` with the
extension ``.wav``, at the input's rate and exactly its length. A file given
twice is enhanced once; two inputs that would share an output are both
refused, each naming the other; the output folder is never read as input.
A bad file is reported and skipped; the run lists the failures at the end
and exits with status 1 if there was any (2: nothing could start, e.g. a bad
option, a refused model folder, no CUDA). Inputs are never overwritten and
every output is written atomically; SIGINT/SIGTERM stop the run with one
line and leave no partial file.

Corpus mode (``--manifest`` or ``--output-manifest``; see
:mod:`cmse_speechbrain.corpus`): inputs from a SpeechBrain CSV/JSON manifest
or folders, a manifest of the enhanced files and one of the failures out, a
rerun keeps complete outputs (``--overwrite`` redoes them), an output folder
holding inputs is refused. With ``--processes N`` (or under ``torchrun
--nproc_per_node=N``) each of N processes enhances its share; with
``--processes`` a run with failed files ends in the failure list and status 1,
where torchrun adds its ``ChildFailedError`` report. ``--batch-size``,
``--max-batch-seconds`` and ``--precision`` batch files of equal STFT frame
count on a GPU. A file longer than one chunk goes disk to disk
(:meth:`~cmse_speechbrain.inference.EnhanceCMCR.enhance_to_file`), and
``--spectrogram`` reads both files block by block: memory does not grow with a
file's length.

``cmse-evaluate --enhanced DIR --clean DIR [--noisy DIR] -o results.csv``
scores enhanced files against their clean references (matched by name):
PESQ-WB, STOI, ESTOI, CSIG/CBAK/COVL, SSNR, SI-SDR, with the noisy input's
scores beside them when ``--noisy`` is given; with ``--noisy`` also the
residual noise (:data:`PAUSE_METRICS`: noise attenuation in the speech pauses
and speech-level change, in dB). A file whose length differs
from its reference's by more than :data:`LENGTH_TOLERANCE` samples (at
16 kHz) is not scored: it is listed with both lengths.

``cmse-report --noisy DIR [--clean DIR] --system NAME=DIR ... -o REPORT``
writes a static listening page (``REPORT/index.html``: players,
spectrograms, metrics; see ``cmse_speechbrain.report``);
``cmse-enhance --report`` writes one for its run into ``OUTDIR/report/``.

``cmse-export RUN_FOLDER MODEL_FOLDER`` turns a training run into a model
folder for ``EnhanceCMCR.from_hparams`` and ``cmse-enhance --source``;
``--torchscript`` and ``--onnx`` add the network on spectra as
``enhance_model.pt`` / ``enhance_model.onnx`` (see ``cmse_speechbrain.export``).

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import contextlib
import csv
import logging
import math
import os
import pathlib
import signal
import sys

import torch
from tqdm import tqdm

from cmse_speechbrain.corpus import CorpusError, describe_error
from cmse_speechbrain.dataio import (
    AudioFileError,
    atomic_output,
    printable,
    read_audio_checked,
)
from cmse_speechbrain.evaluation import (  # noqa: F401 (METRICS, PAUSE_METRICS, score_pair: the CLI's API)
    LENGTH_TOLERANCE,
    METRICS,
    PAUSE_METRICS,
    by_stem,
    score_pair,
)
from cmse_speechbrain.metrics import dnsmos_scores, nanmean


def positive_seconds(text):
    """argparse type: a finite number of seconds above zero.

    Example
    -------
    >>> positive_seconds("2.5")
    2.5
    >>> positive_seconds("nan")
    Traceback (most recent call last):
     ...
    argparse.ArgumentTypeError: must be a finite number of seconds above 0, got 'nan'
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds above 0, got {text!r}"
        )
    return value


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like SIGINT so that temporary files are removed."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises :class:`_Terminated` while the block runs."""

    def handler(signum, frame):
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def spectrogram_summary(audio, n_fft=512, hop=256, columns=2000):
    """A spectrogram in dB of at most ``columns`` frames: each column is the
    maximum over consecutive STFT frames, computed block by block (1,024
    frames at a time, or one column's if more), so that memory is bounded
    whatever the signal's length.

    Arguments
    ---------
    audio : torch.Tensor or cmse_speechbrain.inference.FileSignal
        [samples]; anything sliced as ``audio[a:b]`` with a ``len()``: a
        :class:`~cmse_speechbrain.inference.FileSignal` is read from its file
        one block at a time.

    Example
    -------
    >>> spectrogram_summary(torch.zeros(16000 * 60)).shape
    torch.Size([257, 1875])
    >>> spectrogram_summary(torch.zeros(16000)).shape
    torch.Size([257, 61])
    """
    frames = max(1, (len(audio) - n_fft) // hop + 1)
    group = math.ceil(frames / columns)
    window = torch.hann_window(n_fft)
    block = group * max(1, 1024 // group)  # frames per block, a whole number of columns
    pieces = []
    for first in range(0, frames, block):
        segment = audio[first * hop : (first + block - 1) * hop + n_fft]
        segment = torch.nn.functional.pad(segment, (0, max(0, n_fft - segment.numel())))
        spec = torch.stft(
            segment, n_fft, hop, window=window, center=False, return_complex=True
        )
        db = 20 * torch.log10(spec.abs() + 1e-6)
        count = math.ceil(db.shape[1] / group) * group
        db = torch.nn.functional.pad(db, (0, count - db.shape[1]), value=-120.0)
        pieces.append(db.reshape(db.shape[0], -1, group).amax(dim=2))
    return torch.cat(pieces, dim=1)


def save_spectrogram(noisy, enhanced, sample_rate, path):
    """Writes a PNG of the noisy and enhanced spectrograms (needs matplotlib),
    from bounded summaries (:func:`spectrogram_summary`): tensors, or
    :class:`~cmse_speechbrain.inference.FileSignal` read block by block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for ax, audio, title in zip(axes, [noisy, enhanced], ["noisy", "enhanced"]):
        db = spectrogram_summary(audio)
        ax.imshow(
            db.numpy(),
            origin="lower",
            aspect="auto",
            vmin=float(db.max()) - 80,
            extent=[0, len(audio) / sample_rate, 0, sample_rate / 2000],
        )
        ax.set_title(title)
        ax.set_ylabel("kHz")
    axes[1].set_xlabel("seconds")
    fig.tight_layout()

    with atomic_output(path) as partial:
        fig.savefig(partial, dpi=80, format="png")
    plt.close(fig)


#: Set in the processes that ``cmse-enhance --processes N`` starts.
LAUNCHED_ENV = "CMSE_ENHANCE_PROCESSES"
_WORKER = (
    "import sys\n"
    "from cmse_speechbrain.cli import enhance_main\n"
    "sys.exit(enhance_main())\n"
)


def launch_processes(count, argv):
    """Runs ``cmse-enhance argv`` in ``count`` processes on this machine and
    returns their exit status.

    The processes are started by torchrun's own launcher
    (``torch.distributed.launcher.api.elastic_launch``, as ``torchrun
    --standalone --nproc_per_node=count``; one OpenMP thread each unless
    ``OMP_NUM_THREADS`` is set), so they share the work as under torchrun.
    The difference is the end: a run with failed files ends with rank 0's
    per-file failure list and status 1 (2: nothing could start; 130/143: a
    signal), where torchrun turns any status but 0 into its
    ``ChildFailedError`` report.

    Arguments
    ---------
    count : int
        Processes (one GPU each with ``--device cuda``).
    argv : list of str
        The command line of each, ``--processes`` included.

    Returns
    -------
    int
        Rank 0's exit status (another rank's if rank 0 succeeded).
    """
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # as torchrun does, inherited by the processes
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ[LAUNCHED_ENV] = str(count)
    # the ranks report for themselves; the launcher's own log would repeat it as
    # an error
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=count,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, sys.executable)("-c", _WORKER, *argv)
    except ChildFailedError as error:
        failure = error.failures.get(0) or error.failures[min(error.failures)]
        return 128 - failure.exitcode if failure.exitcode < 0 else failure.exitcode
    except SignalException as error:
        return 128 + int(error.sigval)
    return 0


def enhance_main(argv=None):
    """Entry point of ``cmse-enhance``."""
    parser = argparse.ArgumentParser(
        prog="cmse-enhance",
        description="Enhance speech files, folders or a whole corpus with CMCR-Net.",
        epilog=(
            "Corpus mode (--manifest or --output-manifest): a rerun keeps "
            "complete outputs; under 'torchrun --nproc_per_node=N' every "
            "process enhances its share and rank 0 writes the manifest."
        ),
    )
    parser.add_argument(
        "inputs", nargs="*", help="audio files and/or folders (searched recursively)"
    )
    parser.add_argument(
        "-o", "--output-dir", required=True, help="folder for the enhanced files"
    )
    parser.add_argument(
        "--source", default=None, help="model folder (default: the shipped model)"
    )
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="load any SpeechBrain YAML from --source: it may run any code",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:1, ... (under torchrun, cuda is cuda:LOCAL_RANK)",
    )
    parser.add_argument(
        "--chunk-seconds",
        type=positive_seconds,
        default=None,
        help="chunk length for long files (the 1 s overlap is cut to half a chunk)",
    )
    parser.add_argument(
        "--spectrogram",
        action="store_true",
        help="also write a PNG of noisy vs enhanced",
    )
    parser.add_argument(
        "--no-mix-down",
        action="store_true",
        help="refuse multi-channel files instead of averaging",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="also write a listening page of noisy vs enhanced into OUTDIR/report/ "
        "(DNSMOS if installed)",
    )
    corpus = parser.add_argument_group("corpus")
    corpus.add_argument(
        "--manifest",
        default=None,
        help="SpeechBrain CSV (ID column) or JSON ({id: {...}}) manifest of the inputs",
    )
    corpus.add_argument(
        "--data-root", default=None, help="fills $data_root (CSV) / {data_root} (JSON)"
    )
    corpus.add_argument(
        "--wav-key",
        default=None,
        help="the manifest's audio field (default: wav, else noisy_wav)",
    )
    corpus.add_argument(
        "--output-manifest",
        default=None,
        help="manifest of the enhanced files, .csv or .json (default with --manifest: "
        "OUTDIR/<its name>); failures go to <name>_failures.csv",
    )
    corpus.add_argument(
        "--overwrite", action="store_true", help="enhance again the files already done"
    )
    corpus.add_argument(
        "--batch-size", type=int, default=1, help="most files per batch (default 1)"
    )
    corpus.add_argument(
        "--max-batch-seconds",
        type=positive_seconds,
        default=300.0,
        help="memory cap: most padded audio per batch, in seconds (default 300)",
    )
    corpus.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        default="fp32",
        help="bf16/fp16: autocast, CUDA only",
    )
    corpus.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="enhance with N processes on this machine, as 'torchrun --standalone "
        "--nproc_per_node=N' does (one thread each unless OMP_NUM_THREADS is set; "
        "one GPU each with --device cuda), but failed files end in the failure "
        "list and status 1, not in torchrun's ChildFailedError report",
    )
    args = parser.parse_args(argv)
    if bool(args.inputs) == bool(args.manifest):
        parser.error("give input files/folders or --manifest (one of the two)")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be 1 or more, got {args.batch_size}")
    if args.processes is not None and args.processes < 1:
        parser.error(f"--processes must be 1 or more, got {args.processes}")
    launched = LAUNCHED_ENV in os.environ
    if args.processes is not None and "WORLD_SIZE" in os.environ and not launched:
        parser.error(
            "--processes starts its own processes: give it without torchrun, or use "
            "torchrun without it"
        )
    logging.basicConfig(level=logging.WARNING)
    if (args.processes or 1) > 1 and not launched:
        try:
            return launch_processes(
                args.processes, sys.argv[1:] if argv is None else list(argv)
            )
        except KeyboardInterrupt:  # the processes report it themselves
            return 130
    from cmse_speechbrain.corpus import close_distributed, init_distributed

    try:
        with _sigterm_as_interrupt():
            init_distributed()
            code = _enhance(parser, args)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.barrier()  # no rank exits while another still works
            return code
    except KeyboardInterrupt as stop:
        signal_name, code = (
            ("SIGTERM", 143) if isinstance(stop, _Terminated) else ("SIGINT", 130)
        )
        print(
            f"cmse-enhance: stopped by {signal_name}; no partial file left",
            file=sys.stderr,
        )
        return code
    finally:
        close_distributed()


def _enhance(parser, args):
    from speechbrain.utils.distributed import if_main_process

    from cmse_speechbrain.corpus import autocast_context, enhance_corpus, rank_device
    from cmse_speechbrain.inference import (
        EnhanceCMCR,
        FileSignal,
        check_device,
        shipped_model_folder,
    )

    def stop(message):
        if if_main_process():
            print(f"cmse-enhance: {message}", file=sys.stderr)
        return 2

    device = rank_device(args.device)
    try:
        check_device(device)
        autocast_context(device, args.precision)
    except (RuntimeError, ValueError) as error:
        return stop(error)
    source = pathlib.Path(args.source) if args.source else shipped_model_folder()
    overrides = (
        {} if args.chunk_seconds is None else {"chunk_seconds": args.chunk_seconds}
    )
    try:
        enhancer = EnhanceCMCR.from_hparams(
            source=str(source),
            run_opts={"device": device},
            overrides=overrides,
            trust_code=args.trust_code,
        )
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as error:
        problem = str(error).split(": ", 1)[-1]  # after the model file's name
        if args.chunk_seconds is not None and problem.startswith("chunk_seconds"):
            parser.error(f"--{problem}".replace("_", "-", 1))
        return stop(" ".join(str(error).split()))
    out_dir = pathlib.Path(args.output_dir)
    output_manifest = args.output_manifest
    if args.manifest and output_manifest is None:
        output_manifest = out_dir / pathlib.Path(args.manifest).name
    corpus_mode = output_manifest is not None

    def spectrogram(job):  # both files read block by block: any length
        rate = enhancer.sample_rate
        with (
            FileSignal(job.input, rate) as noisy,
            FileSignal(job.output, rate) as enhanced,
        ):
            save_spectrogram(noisy, enhanced, rate, job.output.with_suffix(".png"))

    try:
        summary = enhance_corpus(
            enhancer,
            out_dir,
            inputs=args.inputs,
            manifest=args.manifest,
            data_root=args.data_root,
            wav_key=args.wav_key,
            output_manifest=output_manifest,
            resume=corpus_mode and not args.overwrite,
            refuse_inputs_inside=corpus_mode,
            batch_size=args.batch_size,
            max_batch_seconds=args.max_batch_seconds,
            precision=args.precision,
            mix_down=not args.no_mix_down,
            after_write=spectrogram if args.spectrogram else None,
        )
    except CorpusError as error:
        return stop(error)
    if summary is None:  # not rank 0: rank 0 reports for all
        return 0
    jobs = summary.plan.jobs
    failures = [
        describe_error(printable(path), reason)
        if not summary.plan.manifest_input
        else f"{key}: {describe_error(printable(path), reason)}"
        for key, path, reason in summary.failures
    ]
    if args.spectrogram:  # a kept output gets its missing PNG too
        for job in jobs:
            if job.done and not job.output.with_suffix(".png").is_file():
                try:
                    spectrogram(job)
                except (AudioFileError, OSError, RuntimeError, ValueError) as error:
                    failures.append(describe_error(job.input, error))
    done = summary.enhanced + summary.kept
    kept = f" ({summary.kept} already done, kept)" if summary.kept else ""
    print(f"enhanced {done} of {len(jobs)} files into {out_dir}{kept}")
    if summary.enhanced:
        print(
            f"{summary.audio_seconds / 3600:.3f} h of audio in "
            f"{summary.wall_seconds:.1f} s with {summary.world_size} "
            f"process(es): {summary.speed:.1f} h of audio per hour; "
            f"peak RSS per process {max(summary.peak_rss_mb):.0f} MB"
        )
    for path in summary.manifests:
        print(f"manifest: {path}")
    if args.report:
        from cmse_speechbrain.report import write_report

        keys = {
            job.output: job.output.relative_to(out_dir).with_suffix("").as_posix()
            for job in jobs
            if job.output is not None
        }
        try:
            page = write_report(
                None,
                {keys[job.output]: job.input for job in jobs if job.output is not None},
                {"enhanced": {key: o for o, key in keys.items()}},
                out_dir / "report",
            )
            print(f"listening page: {page['page']}")
        except (OSError, ValueError, ImportError, RuntimeError) as error:
            failures.append(
                f"listening page not written: {' '.join(str(error).split())}"
            )
    if failures:
        print(f"{len(failures)} failed:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        if "TORCHELASTIC_RUN_ID" in os.environ and LAUNCHED_ENV not in os.environ:
            print(
                "(torchrun shows this exit status 1 as a ChildFailedError "
                f"report below; 'cmse-enhance --processes {summary.world_size} "
                "...' runs the same processes and ends here)",
                file=sys.stderr,
            )
        return 1
    return 0


def _score_file(stem, systems, clean, use_dnsmos):
    row = {"id": stem}
    reference = None
    if clean is not None:
        if stem not in clean:
            raise AudioFileError(
                systems["enhanced"][stem], f"no clean reference {stem}.*"
            )
        reference = read_audio_checked(clean[stem], 16000)
    signals = {}
    for name, files in systems.items():
        if stem not in files:
            raise AudioFileError(systems["enhanced"][stem], f"no {name} file {stem}.*")
        signal = read_audio_checked(files[stem], 16000)
        if (
            reference is not None
            and abs(signal.numel() - reference.numel()) > LENGTH_TOLERANCE
        ):
            raise AudioFileError(
                files[stem],
                f"{signal.numel()} samples (at 16 kHz) but its clean reference "
                f"{clean[stem]} has {reference.numel()}: not scored",
            )
        signals[name] = signal
    for name, signal in signals.items():
        if reference is not None:
            scores = score_pair(reference, signal, noisy=signals.get("noisy"))
            row.update({f"{name}_{k}": v for k, v in scores.items()})
        if use_dnsmos:
            row.update(
                {
                    f"{name}_dnsmos_{k}": v
                    for k, v in dnsmos_scores(signal, 16000).items()
                }
            )
    return row


SHORT_TITLES = {"pause_attenuation_db": "PAUSE_dB", "speech_level_db": "SPEECH_dB"}


def evaluate_main(argv=None):
    """Entry point of ``cmse-evaluate``."""
    try:
        return _evaluate(argv)
    except KeyboardInterrupt:
        print("cmse-evaluate: interrupted", file=sys.stderr)
        return 130


def _evaluate(argv):
    parser = argparse.ArgumentParser(
        prog="cmse-evaluate", description="Score enhanced speech."
    )
    parser.add_argument("--enhanced", required=True, help="folder of enhanced files")
    parser.add_argument(
        "--clean", default=None, help="folder of clean references (same names)"
    )
    parser.add_argument(
        "--noisy",
        default=None,
        help="folder of noisy inputs, scored as the baseline; also gives the "
        "residual noise (pause attenuation and speech level, dB)",
    )
    parser.add_argument(
        "--dnsmos",
        action="store_true",
        help="also DNSMOS SIG/BAK/OVRL (no reference needed; the dnsmos extra)",
    )
    parser.add_argument("-o", "--output", required=True, help="per-file CSV")
    args = parser.parse_args(argv)
    if args.clean is None and not args.dnsmos:
        parser.error(
            "give --clean for intrusive metrics, "
            "--dnsmos for non-intrusive ones, or both"
        )

    clean = by_stem(args.clean) if args.clean else None
    systems = {"enhanced": by_stem(args.enhanced)}
    if args.noisy:
        systems["noisy"] = by_stem(args.noisy)
    intrusive = METRICS + (PAUSE_METRICS if args.noisy else [])
    metrics = (intrusive if clean is not None else []) + (
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
                writer.writerow(
                    {
                        k: (f"{v:.4f}" if isinstance(v, float) else v)
                        for k, v in row.items()
                    }
                )
    print(f"{len(rows)} files scored -> {args.output}")
    print(
        f"{'':10s}" + "".join(f"{SHORT_TITLES.get(m, m.upper()):>12s}" for m in metrics)
    )
    for name in systems:
        means = [nanmean([r[f"{name}_{m}"] for r in rows]) for m in metrics]
        print(f"{name:10s}" + "".join(f"{v:12.3f}" for v in means))
    if failures:
        print(f"{len(failures)} files not scored:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    return 0 if rows else 1


def report_main(argv=None):
    """Entry point of ``cmse-report``."""
    parser = argparse.ArgumentParser(
        prog="cmse-report",
        description=(
            "Write a listening page: players, spectrograms and metrics per file."
        ),
    )
    parser.add_argument("--noisy", required=True, help="folder of noisy inputs")
    parser.add_argument(
        "--clean",
        default=None,
        help="folder of clean references (without: DNSMOS only)",
    )
    parser.add_argument(
        "--system",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a system's output folder (repeatable; files matched by relative path)",
    )
    parser.add_argument(
        "-o", "--output-dir", required=True, help="folder for index.html and its assets"
    )
    parser.add_argument(
        "--no-dnsmos",
        action="store_true",
        help="skip DNSMOS even if speechmos is installed",
    )
    parser.add_argument(
        "--link-audio",
        action="store_true",
        help="players link to the original files instead of 16-bit WAV copies",
    )
    parser.add_argument("--title", default="Listening report", help="the page's title")
    args = parser.parse_args(argv)
    systems = {}
    for value in args.system:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            parser.error(f"--system {value!r}: expected NAME=DIR")
        if name in systems or name in ("noisy", "clean"):
            parser.error(
                f"--system {value!r}: the name {name} is "
                + ("given twice" if name in systems else "reserved")
            )
        systems[name] = folder
    from cmse_speechbrain.report import write_report

    try:
        done = write_report(
            args.clean,
            args.noisy,
            systems,
            args.output_dir,
            dnsmos=False if args.no_dnsmos else None,
            copy_audio=not args.link_audio,
            title=args.title,
        )
    except KeyboardInterrupt:
        print("cmse-report: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, ImportError) as error:
        print(f"cmse-report: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(
        f"{done['files']} files -> {done['page']}"
        + (
            f" ({done['missing']} missing or unreadable versions, shown on the page)"
            if done["missing"]
            else ""
        )
    )
    if args.link_audio:
        from cmse_speechbrain.report import LINKED_AUDIO_NOTE

        print(LINKED_AUDIO_NOTE)
    return 0


def export_main(argv=None):
    """Entry point of ``cmse-export``."""
    parser = argparse.ArgumentParser(
        prog="cmse-export", description="Export a training run as a model folder."
    )
    parser.add_argument(
        "run_folder", help="the recipe's output folder (hyperparams.yaml, save/)"
    )
    parser.add_argument("destination", help="model folder to create")
    parser.add_argument(
        "--force", action="store_true", help="replace an existing destination"
    )
    parser.add_argument(
        "--torchscript",
        action="store_true",
        help="also write the network on spectra as TorchScript (enhance_model.pt)",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help=(
            "also write it as ONNX, opset 17 "
            "(enhance_model.onnx; needs the onnx package)"
        ),
    )
    args = parser.parse_args(argv)
    from cmse_speechbrain.export import export_model, export_network_files

    try:
        folder = export_model(args.run_folder, args.destination, overwrite=args.force)
        print(f"model folder written: {folder}")
        if args.torchscript or args.onnx:
            for path in export_network_files(folder, args.torchscript, args.onnx):
                print(f"network written: {path}")
    except KeyboardInterrupt:
        print("cmse-export: interrupted; nothing half-written left", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as error:
        print(f"cmse-export: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0
