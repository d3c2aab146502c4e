"""Enhancing a whole corpus: files, folders or a manifest in; enhanced files
and a manifest of them out; resumable, sharded over processes with
``torchrun``, batched on a GPU. ``cmse-enhance`` is its command line.

* Inputs: files and folders (walked recursively), or a SpeechBrain manifest:
  CSV with an ``ID`` column or JSON ``{id: {...}}``, read by SpeechBrain's
  ``load_data_csv`` / ``load_data_json`` (``$data_root`` in CSV, ``{data_root}``
  in JSON are replaced by ``data_root``); its ``wav_key`` field (default
  ``wav``, else ``noisy_wav``) names each file.
* Outputs: ``out_dir/<path relative to its input folder>.wav``; for a
  manifest, relative to ``data_root`` when the file lies in it, else to the
  folder common to all its files. Inputs are never overwritten: an output
  folder that is or contains an input is refused (``refuse_inputs_inside``).
* Manifests out: the input entries with their ids and fields, the wav field
  pointing at the enhanced file (absolute path) and ``duration`` in seconds
  (CSV or JSON, after the output manifest's extension); the failures, with
  their reasons, in ``<output manifest>_failures.csv`` (``ID,wav,reason``).
  Both are written atomically, by rank 0, after every rank is done.
* Resuming: an output that exists, reads as audio and has the input's rate
  and number of samples is done and kept, if the folder's recorded settings
  (:func:`run_settings`: the model's weights, chunking, precision) are this
  run's; other settings are refused (:func:`check_settings`). Outputs are
  renamed into place whole (:func:`cmse_speechbrain.dataio.atomic_output`),
  so a killed run leaves complete files or none: no done-list is kept, and
  the check holds however the run ended. ``resume=False`` enhances
  everything again.
* Sharding: under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) the
  process group is started as SpeechBrain does
  (``speechbrain.utils.distributed.ddp_init_group``) with gloo, since ranks
  only exchange the plan and the results: rank 0 plans and broadcasts,
  every rank enhances its share (:func:`shard_by_duration`), rank 0 gathers
  the results and writes the manifests. Without torchrun it is one process.
* Batching: see :func:`batch_key` and :func:`make_batches`; files longer than
  the model's chunk go one by one, disk to disk, through
  :meth:`EnhanceCMCR.enhance_to_file
  <cmse_speechbrain.inference.EnhanceCMCR.enhance_to_file>`
  (the chunked, cross-faded path of ``enhance_batch``, one chunk in memory at
  a time), so memory does not grow with a file's length.
* Precision: fp32, or bf16/fp16 autocast on CUDA (:func:`autocast_context`).

Authors
 * cmse-speechbrain contributors 2026
"""

import codecs
import concurrent.futures
import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import pathlib
import resource
import signal
import tempfile
import time

import soundfile as sf
import torch
from speechbrain.dataio.dataio import load_data_csv, load_data_json
from speechbrain.utils.distributed import (
    ddp_init_group,
    is_distributed_initialized,
    main_process_only,
)
from tqdm import tqdm

from cmse_speechbrain.dataio import (
    AUDIO_EXTENSIONS,
    TEMPORARY_PREFIX,
    AudioFileError,
    atomic_output,
    audio_info,
    printable,
    remove_stale_partials,
)

#: What folders are searched for: every format with a header that soundfile
#: (libsndfile) reads, OGG Vorbis/Opus and MP3 included.
INPUT_EXTENSIONS = AUDIO_EXTENSIONS + (
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aiff",
    ".aif",
    ".aifc",
    ".caf",
    ".w64",
    ".rf64",
    ".au",
    ".snd",
    ".nist",
    ".sph",
    ".voc",
    ".ircam",
    ".sf",
    ".svx",
    ".paf",
    ".avr",
    ".sd2",
    ".wve",
    ".htk",
    ".xi",
    ".mpc",
    ".pvf",
    ".sds",
)
#: Test hook: a process SIGKILLs itself after writing this many files.
KILL_AFTER_ENV = "CMSE_ENHANCE_KILL_AFTER"
#: Errors that fail one file and let the run go on.
FILE_ERRORS = (AudioFileError, OSError, RuntimeError, ValueError)


class CorpusError(ValueError):
    """Nothing can start: a bad manifest, an output folder holding inputs."""


def _same_file(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


def collect_inputs(inputs, exclude=None):
    """(file, path relative to its input root) for files and folders.

    A missing path comes back as (path, None); an unreadable folder as
    (folder, None, problem): both are reported as failures, not raised.
    A file reached twice (given twice, or also inside a given folder) is
    listed once. Folders are walked without following links, and the
    folder ``exclude`` (the output folder) is never entered.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> (tmp / "out").mkdir()
    >>> for name in ["a.wav", "out/a.wav"]:
    ...     sf.write(tmp / name, [0.0] * 800, 16000)
    >>> found = collect_inputs([tmp, tmp / "a.wav"], exclude=tmp / "out")
    >>> [str(rel) for _, rel in found]
    ['a.wav']
    """
    found, seen = [], set()

    def add(file, relative, *problem):
        key = os.path.realpath(file) if relative is not None else None
        if key is not None and key in seen:
            return
        seen.add(key)
        found.append((file, relative, *problem))

    for item in inputs:
        path = pathlib.Path(item)
        if not path.is_dir():
            add(path, pathlib.Path(path.name) if path.exists() else None)
            continue
        for folder, subfolders, files in os.walk(
            path,
            onerror=lambda e: found.append(
                (pathlib.Path(e.filename), None, f"cannot read folder ({e.strerror})")
            ),
        ):
            subfolders[:] = sorted(
                name
                for name in subfolders
                if exclude is None
                or not _same_file(os.path.join(folder, name), exclude)
            )
            for name in sorted(files):
                file = pathlib.Path(folder) / name
                if file.suffix.lower() in INPUT_EXTENSIONS and not name.startswith(
                    TEMPORARY_PREFIX
                ):
                    add(file, file.relative_to(path))
    return found


def plan_outputs(inputs, out_dir):
    """The output of each collected input, or why it gets none.

    Each output is ``out_dir/<relative path>`` with the extension ``.wav``.
    Inputs that would share an output are all refused, each naming the
    others; so is an output that is an input.

    Arguments
    ---------
    inputs : list
        What :func:`collect_inputs` returns.
    out_dir : pathlib.Path
        The output folder.

    Returns
    -------
    list of (pathlib.Path, pathlib.Path or None, str or None)
        Input, output, problem.

    Example
    -------
    >>> plan = plan_outputs(
    ...     [
    ...         (pathlib.Path("x/s.wav"), pathlib.Path("s.wav")),
    ...         (pathlib.Path("y/s.flac"), pathlib.Path("s.flac")),
    ...     ],
    ...     pathlib.Path("out"),
    ... )
    >>> [problem for _, _, problem in plan]  # doctest: +NORMALIZE_WHITESPACE
    ['out/s.wav would also be the output of y/s.flac (enhance them in separate
      runs or rename one)',
     'out/s.wav would also be the output of x/s.wav (enhance them in separate
      runs or rename one)']
    """
    by_output = {}
    for path, relative, *problem in inputs:
        if relative is not None:
            output = (out_dir / relative).with_suffix(".wav")
            by_output.setdefault(os.path.abspath(output), []).append(path)
    input_files = {os.path.realpath(item[0]) for item in inputs if item[1] is not None}
    plan = []
    for path, relative, *problem in inputs:
        if relative is None:
            plan.append((path, None, problem[0] if problem else "file not found"))
            continue
        output = (out_dir / relative).with_suffix(".wav")
        others = [
            other for other in by_output[os.path.abspath(output)] if other != path
        ]
        if others:
            names = ", ".join(str(other) for other in others)
            plan.append(
                (
                    path,
                    None,
                    f"{output} would also be the output of {names} "
                    "(enhance them in separate runs or rename one)",
                )
            )
        elif os.path.realpath(output) in input_files:
            plan.append((path, None, f"output {output} would overwrite an input"))
        else:
            plan.append((path, output, None))
    return plan


def describe_error(path, error):
    """One line for a failed file: the file, then the problem (once).

    Example
    -------
    >>> describe_error("m/u.wav", AudioFileError("m/u.wav", "empty audio"))
    'm/u.wav: empty audio'
    >>> describe_error("m/u.wav", OSError(28, "No space left on device"))
    'm/u.wav: [Errno 28] No space left on device'
    """
    text = " ".join(str(error).split()) or type(error).__name__
    return text if text.startswith(f"{path}:") else f"{path}: {text}"


def _reason(path, error):
    """The problem alone, without the file name."""
    return describe_error(path, error)[len(f"{path}: ") :]


def read_manifest(path, data_root=None, wav_key=None):
    """Reads a SpeechBrain CSV or JSON manifest.

    Arguments
    ---------
    path : str or pathlib.Path
        ``.json`` (``{id: {field: value}}``) or CSV (an ``ID`` column).
    data_root : str, optional
        Replaces ``$data_root`` (CSV) or ``{data_root}`` (JSON).
    wav_key : str, optional
        The field holding the audio path (default: ``wav``, else ``noisy_wav``).

    Returns
    -------
    entries : dict
        id -> fields (``duration`` a float in CSV, as SpeechBrain reads it).
    wav_key : str

    Raises
    ------
    CorpusError
        Unreadable, no ``ID``, a placeholder without ``data_root``, no wav field.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> _ = (tmp / "m.csv").write_text(
    ...     "ID,duration,wav,spk\\nu1,1.5,$data_root/a.wav,p1\\n"
    ... )
    >>> read_manifest(tmp / "m.csv", data_root="/data")
    ({'u1': {'duration': 1.5, 'wav': '/data/a.wav', 'spk': 'p1'}}, 'wav')
    >>> read_manifest(tmp / "m.csv")
    Traceback (most recent call last):
     ...
    cmse_speechbrain.corpus.CorpusError: ...m.csv: The item $data_root/a.wav
    requires replacements which were not supplied. (--data-root fills
    $data_root in CSV, {data_root} in JSON)
    """
    path = pathlib.Path(path)
    replacements = {} if data_root is None else {"data_root": str(data_root)}
    is_json = path.suffix.lower() == ".json"
    try:
        with open(path, "rb") as fin:
            # a byte-order mark is no part of the ID column
            text = fin.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CorpusError(
            f"{path}: not UTF-8 text, so not a CSV or JSON manifest"
        ) from None
    except OSError as error:
        raise CorpusError(
            f"{path}: cannot read the manifest ({error.strerror})"
        ) from None
    if not is_json:
        _check_csv_rows(path, text)
    try:
        with _without_bom(path, text) as readable:
            entries = (
                load_data_json(readable, replacements)
                if is_json
                else load_data_csv(readable, replacements)
            )
    except (TypeError, AttributeError):  # e.g. a JSON list
        raise CorpusError(
            f"{path}: expected a JSON object {{id: {{field: value}}}}"
        ) from None
    except KeyError as error:
        text = str(error.args[0]) if error.args else ""
        if is_json:
            text = f"uses {{{text}}}, which was not given"
        hint = (
            ""
            if "'ID'" in text
            else " (--data-root fills $data_root in CSV, {data_root} in JSON)"
        )
        raise CorpusError(f"{path}: {text}{hint}") from None
    except (OSError, ValueError, csv.Error) as error:
        raise CorpusError(
            f"{path}: cannot read the manifest ({' '.join(str(error).split())})"
        ) from None
    if not isinstance(entries, dict) or not all(
        isinstance(e, dict) for e in entries.values()
    ):
        raise CorpusError(f"{path}: expected a JSON object {{id: {{field: value}}}}")
    if not entries:
        raise CorpusError(f"{path}: the manifest is empty")
    if wav_key is None:
        keys = set.intersection(*(set(e) for e in entries.values()))
        wav_key = next((k for k in ("wav", "noisy_wav") if k in keys), None)
        if wav_key is None:
            raise CorpusError(
                f"{path}: no 'wav' or 'noisy_wav' field in every entry (--wav-key)"
            )
    missing = [key for key, entry in entries.items() if not entry.get(wav_key)]
    if missing:
        raise CorpusError(f"{path}: no {wav_key!r} in entries {', '.join(missing[:5])}")
    for key, entry in entries.items():
        if not isinstance(entry[wav_key], str):
            raise CorpusError(
                f"{path}: entry {key!r}: field {wav_key!r} is {entry[wav_key]!r}, "
                "not a file path"
            )
    return entries, wav_key


def _check_csv_rows(path, text):
    """Refuses a CSV row with more or fewer fields than the header, naming it."""
    rows = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    try:
        header = next(rows, [])
        for row in rows:
            if row and len(row) != len(header):
                raise CorpusError(
                    f"{path}, line {rows.line_num}: {len(row)} fields where the header "
                    f"has {len(header)} ({', '.join(header)})"
                )
    except csv.Error as error:
        raise CorpusError(f"{path}, line {rows.line_num}: not CSV ({error})") from None


@contextlib.contextmanager
def _without_bom(path, text):
    """``path``, or a copy of it without its UTF-8 byte-order mark."""
    with open(path, "rb") as fin:
        has_bom = fin.read(3) == codecs.BOM_UTF8
    if not has_bom:
        yield path
        return
    with tempfile.TemporaryDirectory() as folder:
        copy = pathlib.Path(folder) / path.name
        copy.write_text(text, encoding="utf-8")
        yield copy


def manifest_layout(paths, data_root=None):
    """The relative path of each manifest file, which its output keeps.

    Relative to ``data_root`` for a file inside it, else to the folder
    common to all the files.

    Example
    -------
    >>> files = ["/d/a/x.wav", "/d/b/y.wav", "/e/z.wav"]
    >>> [p.as_posix() for p in manifest_layout(files, "/d")]
    ['a/x.wav', 'b/y.wav', 'z.wav']
    >>> [p.as_posix() for p in manifest_layout(["/d/a/x.wav", "/d/b/y.wav"])]
    ['a/x.wav', 'b/y.wav']
    """
    paths = [pathlib.Path(os.path.abspath(p)) for p in paths]
    root = pathlib.Path(os.path.abspath(data_root)) if data_root else None
    outside = [p for p in paths if root is None or not p.is_relative_to(root)]
    common = (
        pathlib.Path(os.path.commonpath([p.parent for p in outside]))
        if outside
        else None
    )
    return [
        p.relative_to(root if root is not None and p.is_relative_to(root) else common)
        for p in paths
    ]


@dataclasses.dataclass
class Job:
    """One output to write: its input, and what is known of both."""

    input: pathlib.Path
    output: pathlib.Path = None
    problem: str = None  # why it cannot be enhanced
    frames: int = 0  # input samples, at its own rate
    rate: int = 0
    done: bool = False  # a complete output exists (resuming)

    @property
    def seconds(self):
        """Duration of the input."""
        return self.frames / self.rate if self.rate else 0.0

    @property
    def todo(self):
        """Whether this run enhances it."""
        return self.problem is None and not self.done


@dataclasses.dataclass
class Plan:
    """What a run does: ``jobs`` and the manifest ``items`` (id, fields, job)."""

    jobs: list
    items: list
    wav_key: str = "wav"
    manifest_input: bool = False


def output_complete(job):
    """Whether ``job.output`` is audio with the input's rate and length."""
    try:
        info = sf.info(str(job.output))
    except Exception:  # missing or not audio: soundfile raises several types
        return False
    return (info.frames, info.samplerate) == (job.frames, job.rate)


def plan_corpus(
    out_dir,
    inputs=(),
    manifest=None,
    data_root=None,
    wav_key=None,
    resume=True,
    refuse_inputs_inside=True,
):
    """Lists the outputs to write, why some cannot be, and which are done.

    Arguments
    ---------
    out_dir : str or pathlib.Path
        The output folder.
    inputs : list
        Files and folders (without ``manifest``).
    manifest : str or pathlib.Path, optional
        A manifest instead (see :func:`read_manifest`).
    data_root, wav_key : str, optional
        See :func:`read_manifest`.
    resume : bool
        Mark complete outputs as done (:func:`output_complete`).
    refuse_inputs_inside : bool
        Raise if an input lies in the output folder.

    Returns
    -------
    Plan
    """
    out_dir = pathlib.Path(out_dir)
    if manifest is not None:
        entries, wav_key = read_manifest(manifest, data_root, wav_key)
        paths = [pathlib.Path(entry[wav_key]) for entry in entries.values()]
        relative = manifest_layout(paths, data_root)
        named = [
            (key, entry, path, rel if path.is_file() else None)
            for (key, entry), path, rel in zip(entries.items(), paths, relative)
        ]
    else:
        named = [
            (
                found[1].with_suffix("").as_posix()
                if found[1] is not None
                else str(found[0]),
                {},
                *found,
            )
            for found in collect_inputs(inputs, exclude=out_dir)
        ]
    if refuse_inputs_inside:
        inside = [
            path
            for _, _, path, rel, *_ in named
            if rel is not None
            and pathlib.Path(os.path.realpath(path)).is_relative_to(
                os.path.realpath(out_dir)
            )
        ]
        if inside:
            raise CorpusError(
                f"the output folder {out_dir} holds the input {inside[0]}"
                f"{f' and {len(inside) - 1} more' if len(inside) > 1 else ''}: "
                "inputs are never overwritten, choose another folder"
            )
    unique, index_of, items = [], {}, []
    for key, entry, path, rel, *problem in named:
        unique_key = (
            os.path.realpath(path) if rel is not None else ("missing", len(unique))
        )
        if unique_key not in index_of:
            index_of[unique_key] = len(unique)
            unique.append((path, rel, *problem))
        items.append((key, entry, index_of[unique_key]))
    jobs = [
        Job(path, output, problem)
        for path, output, problem in plan_outputs(unique, out_dir)
    ]
    for job in jobs:
        if job.problem is None and printable(job.input) != str(job.input):
            job.problem = (
                "the file name is not valid UTF-8 (no manifest or page can name "
                "it): rename it"
            )
        if job.problem is None:
            try:
                info = audio_info(job.input)
                job.frames, job.rate = info.frames, info.samplerate
            except AudioFileError as error:
                job.problem = error.problem
                continue
            job.done = resume and output_complete(job)
    return Plan(jobs, items, wav_key or "wav", manifest is not None)


def shard_by_duration(seconds, world_size):
    """Splits jobs over ranks so that each gets about as much audio.

    Longest first, each to the rank with the least audio so far (LPT).

    Arguments
    ---------
    seconds : list of float
        The duration of each job.
    world_size : int
        How many ranks.

    Returns
    -------
    list of list of int
        Job indices per rank, each in increasing order.

    Example
    -------
    >>> shard_by_duration([9.0, 1.0, 4.0, 4.0, 2.0], 2)
    [[0, 1], [2, 3, 4]]
    """
    loads, shards = [0.0] * world_size, [[] for _ in range(world_size)]
    for index in sorted(range(len(seconds)), key=lambda i: (-seconds[i], i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        loads[rank] += seconds[index]
        shards[rank].append(index)
    return [sorted(shard) for shard in shards]


def batch_key(enhancer, samples):
    """Files with the same key can be enhanced in one padded batch
    (:meth:`EnhanceCMCR.batch_key <cmse_speechbrain.inference.EnhanceCMCR.batch_key>`).

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> from cmse_speechbrain.inference import EnhanceCMCR
    >>> net = CMCRNet(channels=[4, 8], d_model=8, nhead=2)
    >>> enhancer = EnhanceCMCR(modules={"enhance_model": net},
    ...                        hparams={"sample_rate": 16000, "chunk_seconds": 1.0})
    >>> [batch_key(enhancer, n) for n in (255, 16001)]
    [0, None]
    """
    return enhancer.batch_key(samples)


def make_batches(keys, lengths, batch_size=1, max_samples=math.inf):
    """Groups jobs with equal keys into batches under a size and memory cap.

    Arguments
    ---------
    keys : list
        :func:`batch_key` of each job (None: alone).
    lengths : list of int
        Samples of each job at the model's rate.
    batch_size : int
        Most files per batch.
    max_samples : float
        Most padded samples per batch (batch size times its longest file);
        a file above it alone still forms a batch.

    Returns
    -------
    list of list of int
        Job indices per batch.

    Example
    -------
    >>> make_batches([3, None, 3, 3, 5], [800, 9000, 790, 810, 1300], batch_size=2)
    [[0, 2], [3], [4], [1]]
    >>> make_batches([3, 3, 3], [800, 800, 800], batch_size=8, max_samples=1600)
    [[0, 1], [2]]
    """
    order = sorted(range(len(keys)), key=lambda i: (keys[i] is None, keys[i] or 0, i))
    batches, current = [], []
    for index in order:
        if current and (
            keys[index] is None
            or keys[index] != keys[current[0]]
            or len(current) >= batch_size
            or (len(current) + 1) * max(lengths[j] for j in current + [index])
            > max_samples
        ):
            batches.append(current)
            current = []
        current.append(index)
    return batches + [current] if current else batches


def autocast_context(device, precision="fp32"):
    """A factory of the context to run the model in.

    Arguments
    ---------
    device : str or torch.device
        Where the model runs.
    precision : str
        ``fp32``; ``bf16`` or ``fp16``: autocast, CUDA only (bf16 where the
        GPU supports it).

    Returns
    -------
    callable
        Returns a fresh context manager at each call.

    Example
    -------
    >>> with autocast_context("cpu")():
    ...     pass
    >>> autocast_context("cpu", "bf16")
    Traceback (most recent call last):
     ...
    ValueError: --precision bf16 is autocast on CUDA only; on cpu use fp32
    """
    if precision == "fp32":
        return contextlib.nullcontext
    if precision not in ("bf16", "fp16"):
        raise ValueError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
    if torch.device(device).type != "cuda":
        raise ValueError(
            f"--precision {precision} is autocast on CUDA only; on {device} use fp32"
        )
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU does not support bf16: use --precision fp16")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def enhance_group(enhancer, signals, autocast):
    """Enhances signals [samples] of one :func:`batch_key` together.

    One signal goes through ``enhance_batch`` as ``enhance_file`` sends it;
    several are zero-padded to the longest, given with their lengths, and
    cropped back.

    Arguments
    ---------
    enhancer : cmse_speechbrain.inference.EnhanceCMCR
        The model.
    signals : list of torch.Tensor
        [samples] each, at the model's rate.
    autocast : callable
        From :func:`autocast_context`.

    Returns
    -------
    list of torch.Tensor
        The enhanced signals, each as long as its input.
    """
    with autocast():
        if len(signals) == 1:  # as enhance_file does
            return [enhancer.enhance_batch(signals[0])]
        length = max(s.numel() for s in signals)
        batch = torch.stack(
            [torch.nn.functional.pad(s, (0, length - s.numel())) for s in signals]
        )
        enhanced = enhancer.enhance_batch(
            batch,
            torch.tensor([s.numel() / length for s in signals], dtype=torch.float64),
        )
    return [e[: s.numel()] for e, s in zip(enhanced, signals)]


def enhance_jobs(
    enhancer,
    jobs,
    batch_size=1,
    max_batch_seconds=None,
    precision="fp32",
    mix_down=True,
):
    """Enhances and writes jobs, in batches; yields each (index, reason or None).

    Files are read one batch ahead in a thread. A batch that fails (e.g.
    out of GPU memory) is retried file by file; a file that fails is
    reported with its reason and the rest go on.

    Arguments
    ---------
    enhancer : cmse_speechbrain.inference.EnhanceCMCR
        The model.
    jobs : list of Job
        What to enhance (``frames`` and ``rate`` known).
    batch_size : int
        Most files per batch.
    max_batch_seconds : float, optional
        Most padded audio per batch, seconds at the model's rate (the memory
        cap).
    precision : str
        See :func:`autocast_context`.
    mix_down : bool
        Average several channels (else refuse them).

    Yields
    ------
    (int, str or None)
        Index into ``jobs`` and why it failed (None: written).
    """
    from cmse_speechbrain.dsp import resampled_length

    rate = enhancer.sample_rate
    autocast = autocast_context(enhancer.device, precision)
    lengths = [resampled_length(job.frames, job.rate, rate) for job in jobs]
    cap = max_batch_seconds * rate if max_batch_seconds else math.inf
    keys = [batch_key(enhancer, n) for n in lengths]
    batches = make_batches(keys, lengths, batch_size, cap)

    def load(batch):
        loaded = []
        for index in batch:
            if keys[index] is None:  # longer than a chunk: streamed, not read here
                loaded.append((index, None, None))
                continue
            try:
                loaded.append(
                    (index, *enhancer.read_input(jobs[index].input, mix_down))
                )
            except FILE_ERRORS as error:
                loaded.append((index, error, None))
        return loaded

    def run(signals):  # a batch that fails is retried file by file
        try:
            return enhance_group(enhancer, signals, autocast)
        except RuntimeError as error:
            return (
                [error]
                if len(signals) == 1
                else [out for s in signals for out in run([s])]
            )

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(load, batches[0]) if batches else None
        for number in range(len(batches)):
            loaded = pending.result()
            if number + 1 < len(batches):
                pending = pool.submit(load, batches[number + 1])
            groups = {}
            for index, noisy, info in loaded:
                if noisy is None:  # disk to disk, one chunk in memory at a time
                    try:
                        with autocast():
                            enhancer.enhance_to_file(
                                jobs[index].input, jobs[index].output, mix_down
                            )
                    except FILE_ERRORS as error:
                        yield index, _reason(jobs[index].input, error)
                        continue
                    yield index, None
                elif info is None:
                    yield index, _reason(jobs[index].input, noisy)
                else:  # the actual length decides (the estimate may be off by one)
                    key = batch_key(enhancer, noisy.numel())
                    groups.setdefault(
                        ("alone", index) if key is None else key, []
                    ).append((index, noisy, info))
            for group in groups.values():
                outputs = run([noisy for _, noisy, _ in group])
                for (index, _, info), enhanced in zip(group, outputs):
                    job = jobs[index]
                    try:
                        if isinstance(enhanced, Exception):
                            raise enhanced
                        enhancer.write_output(enhanced, info, job.input, job.output)
                    except FILE_ERRORS as error:
                        yield index, _reason(job.input, error)
                        continue
                    yield index, None


def init_distributed():
    """Joins torchrun's process group (gloo) if launched by it.

    Returns
    -------
    (int, int)
        Rank and world size; (0, 1) without torchrun.
    """
    if "WORLD_SIZE" in os.environ and not is_distributed_initialized():
        ddp_init_group({"distributed_backend": "gloo"})
    if is_distributed_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def close_distributed():
    """Leaves the process group, if any."""
    if is_distributed_initialized():
        torch.distributed.destroy_process_group()


def rank_device(device):
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun (one GPU per rank).

    Example
    -------
    >>> rank_device("cpu"), rank_device("cuda:1")
    ('cpu', 'cuda:1')
    """
    if device == "cuda" and os.environ.get("LOCAL_RANK") is not None:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


@dataclasses.dataclass
class Summary:
    """What a run did (complete on rank 0)."""

    plan: Plan
    failures: list  # (id, input, reason)
    enhanced: int  # files written by this run
    kept: int  # complete outputs kept (resuming)
    audio_seconds: float  # audio enhanced by this run
    wall_seconds: float
    world_size: int
    peak_rss_mb: list  # per rank
    manifests: tuple = ()  # paths written

    @property
    def speed(self):
        """Hours of audio per hour of wall time."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else math.nan


def write_manifests(plan, failed, output_manifest):
    """Writes the output manifest and ``<name>_failures.csv`` atomically.

    Arguments
    ---------
    plan : Plan
        The run's plan.
    failed : dict
        Job index -> reason, for jobs that failed in this run.
    output_manifest : str or pathlib.Path
        ``.json`` or CSV.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The manifest and the failure manifest.
    """
    output_manifest = pathlib.Path(output_manifest)
    rows, failures = {}, []
    for key, entry, index in plan.items:
        job = plan.jobs[index]
        reason = job.problem or failed.get(index)
        if reason is not None:
            failures.append(
                {"ID": printable(key), "wav": printable(job.input), "reason": reason}
            )
        else:
            rows[key] = {
                **entry,
                plan.wav_key: str(job.output.resolve()),
                "duration": job.seconds,
            }
    with atomic_output(output_manifest) as partial:
        with open(partial, "w", newline="", encoding="utf-8") as fout:
            if output_manifest.suffix.lower() == ".json":
                json.dump(rows, fout, indent=2)
            else:
                fields = ["ID", "duration", plan.wav_key]
                fields += [k for row in rows.values() for k in row if k not in fields]
                writer = csv.DictWriter(fout, fieldnames=list(dict.fromkeys(fields)))
                writer.writeheader()
                writer.writerows({"ID": key, **row} for key, row in rows.items())
    failure_manifest = failure_manifest_path(output_manifest)
    with atomic_output(failure_manifest) as partial:
        with open(partial, "w", newline="", encoding="utf-8") as fout:
            writer = csv.DictWriter(fout, fieldnames=["ID", "wav", "reason"])
            writer.writeheader()
            writer.writerows(failures)
    return output_manifest, failure_manifest


def _is_our_manifest(path):
    """Whether an existing file reads as a manifest that :func:`write_manifests`
    wrote."""
    try:
        with open(path, encoding="utf-8") as fin:
            text = fin.read()
    except (OSError, UnicodeDecodeError):
        return False
    if pathlib.Path(path).suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except ValueError:
            return False
        return isinstance(rows, dict) and all(
            isinstance(row, dict) and "duration" in row for row in rows.values()
        )
    header = text.split("\n", 1)[0].strip()
    return header.startswith("ID,duration,") or header == "ID,wav,reason"


def check_output_manifest(output_manifest, plan, input_manifest=None):
    """Refuses an output manifest that would replace an input or a file this
    tool did not write (the failure manifest beside it included).

    Arguments
    ---------
    output_manifest : str or pathlib.Path
        ``.csv`` or ``.json``.
    plan : Plan
        The run's plan (its inputs).
    input_manifest : str or pathlib.Path, optional
        The manifest read (``--manifest``).

    Raises
    ------
    CorpusError
        Naming the path and why.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> sf.write(tmp / "a.wav", [0.0] * 800, 16000)
    >>> check_output_manifest(tmp / "a.wav", Plan([], []))
    Traceback (most recent call last):
     ...
    cmse_speechbrain.corpus.CorpusError: --output-manifest .../a.wav: must end in
    .csv or .json
    >>> check_output_manifest(tmp / "m.csv", Plan([Job(tmp / "m.csv")], []))
    Traceback (most recent call last):
     ...
    cmse_speechbrain.corpus.CorpusError: --output-manifest .../m.csv would
    overwrite the input .../m.csv
    """
    output_manifest = pathlib.Path(output_manifest)
    if output_manifest.suffix.lower() not in (".csv", ".json"):
        raise CorpusError(
            f"--output-manifest {output_manifest}: must end in .csv or .json"
        )
    inputs = [job.input for job in plan.jobs] + (
        [input_manifest] if input_manifest else []
    )
    inputs = {os.path.realpath(path): path for path in inputs}
    for path in (output_manifest, failure_manifest_path(output_manifest)):
        if os.path.realpath(path) in inputs:
            raise CorpusError(
                f"--output-manifest {output_manifest} would overwrite the input "
                f"{inputs[os.path.realpath(path)]}"
            )
        if os.path.isdir(path):
            raise CorpusError(
                f"--output-manifest {output_manifest}: {path} is a folder"
            )
        if os.path.lexists(path) and not _is_our_manifest(path):
            raise CorpusError(
                f"--output-manifest {output_manifest}: {path} exists and is not a "
                "manifest cmse-enhance wrote; it is never replaced (remove it or "
                "choose another name)"
            )


def failure_manifest_path(output_manifest):
    """``<output manifest>_failures.csv``.

    Example
    -------
    >>> failure_manifest_path("out/m.json").as_posix()
    'out/m_failures.csv'
    """
    output_manifest = pathlib.Path(output_manifest)
    return output_manifest.with_name(f"{output_manifest.stem}_failures.csv")


#: The settings of the run that wrote an output folder (:func:`check_settings`).
SETTINGS_FILE = "cmse_enhance_settings.json"


def run_settings(enhancer, precision="fp32", mix_down=True):
    """What decides the enhanced audio: the model (a hash of its weights and
    its configuration), the chunking, the precision and the mix-down.

    Example
    -------
    >>> from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder
    >>> enhancer = EnhanceCMCR.from_hparams(source=shipped_model_folder())
    >>> settings = run_settings(enhancer)
    >>> (settings["chunk_samples"], settings["overlap_samples"],
    ...  len(settings["weights_sha256"]))
    (160000, 16000, 64)
    """
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in enhancer.mods.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)};".encode())
        digest.update(
            tensor.detach()
            .cpu()
            .reshape(-1)
            .contiguous()
            .view(torch.uint8)
            .numpy()
            .tobytes()
        )
    model = enhancer.mods.enhance_model
    chunk, overlap = enhancer.chunking()
    return {
        "weights_sha256": digest.hexdigest(),
        "model": type(model).__name__,
        "config": json.loads(json.dumps(getattr(model, "config", {}), default=str)),
        "sample_rate": enhancer.sample_rate,
        "chunk_samples": chunk,
        "overlap_samples": overlap,
        "precision": precision,
        "mix_down": mix_down,
    }


def check_settings(out_dir, settings, resume=True):
    """Keeps the outputs of an earlier run only if it had the same settings.

    The settings of each run are recorded in ``out_dir/``:data:`SETTINGS_FILE`;
    a resumed run with other ones is refused (``resume=False`` redoes the
    files and records the new ones).

    Raises
    ------
    CorpusError
        Naming the settings that differ.
    """
    path = pathlib.Path(out_dir) / SETTINGS_FILE
    if resume and path.is_file():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = {}
        changed = [key for key in settings if earlier.get(key) != settings[key]]
        if changed:
            names = ", ".join(
                "the model's weights" if key == "weights_sha256" else key
                for key in changed
            )
            raise CorpusError(
                f"{out_dir} holds outputs made with other settings ({names} "
                f"differ, see {path}): --overwrite enhances them again, or choose "
                "another folder"
            )
    with atomic_output(path) as partial:
        partial.write_text(json.dumps(settings, indent=2), encoding="utf-8")


def check_writable(folder):
    """Makes ``folder`` (and its parents) and checks that a file can be
    written there, before any work is done.

    Raises
    ------
    CorpusError
        Naming the path that cannot be made or written.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> _ = (tmp / "a file").write_text("")
    >>> check_writable(tmp / "a file" / "out")
    Traceback (most recent call last):
     ...
    cmse_speechbrain.corpus.CorpusError: .../a file/out: cannot write there (Not a
    directory: .../a file/out)
    """
    try:
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, dir=folder)
        os.close(fd)
        os.remove(name)
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        raise CorpusError(
            f"{folder}: cannot write there ({error.strerror}{where})"
        ) from None


def _plan_or_error(*args, output_manifest=None, settings=None, **kwargs):
    try:
        plan = plan_corpus(*args, **kwargs)
        if output_manifest is not None:
            check_output_manifest(output_manifest, plan, kwargs.get("manifest"))
        if any(job.todo for job in plan.jobs) or settings is not None:
            check_writable(args[0])
            remove_stale_partials(args[0])
        if output_manifest is not None:
            check_writable(pathlib.Path(output_manifest).parent)
        if settings is not None:
            check_settings(args[0], settings, kwargs.get("resume", True))
        return plan
    except CorpusError as error:  # goes to every rank, which all stop
        return error


def enhance_corpus(
    enhancer,
    out_dir,
    inputs=(),
    manifest=None,
    data_root=None,
    wav_key=None,
    output_manifest=None,
    resume=True,
    refuse_inputs_inside=True,
    batch_size=1,
    max_batch_seconds=None,
    precision="fp32",
    mix_down=True,
    after_write=None,
    progress=True,
):
    """Enhances a corpus on this rank's share; rank 0 merges and returns all.

    Call :func:`init_distributed` first under torchrun (every rank calls
    this with the same arguments). Arguments as in :func:`plan_corpus` and
    :func:`enhance_jobs`, plus:

    Arguments
    ---------
    output_manifest : str or pathlib.Path, optional
        Where rank 0 writes the manifests (:func:`write_manifests`).
    after_write : callable, optional
        Called with each :class:`Job` written (e.g. a spectrogram).
    progress : bool
        A progress bar per rank (seconds of audio).

    Returns
    -------
    Summary
        On rank 0; None on the other ranks.

    Raises
    ------
    CorpusError
        On every rank, when nothing can start.
    """
    rank, world = (
        (torch.distributed.get_rank(), torch.distributed.get_world_size())
        if is_distributed_initialized()
        else (0, 1)
    )
    start = time.perf_counter()
    settings = (
        run_settings(enhancer, precision, mix_down)
        if resume or output_manifest
        else None
    )
    plan = main_process_only(_plan_or_error)(
        out_dir,
        inputs,
        manifest=manifest,
        data_root=data_root,
        wav_key=wav_key,
        resume=resume,
        refuse_inputs_inside=refuse_inputs_inside,
        output_manifest=output_manifest,
        settings=settings,
    )
    if isinstance(plan, CorpusError):
        raise plan
    todo = [i for i, job in enumerate(plan.jobs) if job.todo]
    mine = [
        todo[k]
        for k in shard_by_duration([plan.jobs[i].seconds for i in todo], world)[rank]
    ]
    jobs = [plan.jobs[i] for i in mine]
    failed, seconds, written = {}, 0.0, 0
    kill_after = int(os.environ.get(KILL_AFTER_ENV, 0))
    desc = "enhancing" if world == 1 else f"enhancing [rank {rank}/{world}]"
    with tqdm(
        total=sum(job.seconds for job in jobs),
        unit="s",
        unit_scale=True,
        desc=desc,
        position=rank,
        disable=not progress,
        leave=world == 1,
    ) as bar:
        for index, reason in enhance_jobs(
            enhancer, jobs, batch_size, max_batch_seconds, precision, mix_down
        ):
            job = jobs[index]
            if reason is None and after_write is not None:
                try:
                    after_write(job)
                except FILE_ERRORS as error:
                    reason = _reason(job.input, error)
            if reason is None:
                seconds += job.seconds
                written += 1
                if written == kill_after:  # test hook: die as a crash would
                    os.kill(os.getpid(), signal.SIGKILL)
            else:
                failed[mine[index]] = reason
            bar.update(min(job.seconds, bar.total - bar.n))  # no rounding past the end
    local = {
        "failed": failed,
        "seconds": seconds,
        "written": written,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    gathered = [local]
    if world > 1:
        gathered = [None] * world if rank == 0 else None
        torch.distributed.gather_object(local, gathered, dst=0)
    if rank != 0:
        return None
    failed = {k: v for part in gathered for k, v in part["failed"].items()}
    manifests = (
        write_manifests(plan, failed, output_manifest) if output_manifest else ()
    )
    failures = [
        (key, plan.jobs[i].input, plan.jobs[i].problem or failed[i])
        for key, _, i in plan.items
        if plan.jobs[i].problem or i in failed
    ]
    return Summary(
        plan=plan,
        failures=failures,
        enhanced=sum(p["written"] for p in gathered),
        kept=sum(job.done for job in plan.jobs),
        audio_seconds=sum(p["seconds"] for p in gathered),
        wall_seconds=time.perf_counter() - start,
        world_size=world,
        peak_rss_mb=[p["peak_rss_mb"] for p in gathered],
        manifests=manifests,
    )
