"""Audio input/output with checks, and the recipes' data pipelines.

Every reader here refuses a bad file by name (:class:`AudioFileError`):
missing, unreadable or not audio, empty, too short, NaN/inf samples.
Other rates are resampled, several channels mixed down. Writers write to a
temporary name in the destination folder and rename, so a reader never sees
half a file.

Authors
 * cmse-speechbrain contributors 2026
"""

import contextlib
import json
import logging
import os
import pathlib
import random
import tempfile

import soundfile as sf
import speechbrain as sb
import torch
import torchaudio.functional as AF

AUDIO_EXTENSIONS = (".wav", ".flac")
TEMPORARY_PREFIX = ".cmse-"  # atomic_output's partial files
#: Sampling rates a file may have (a 1 Hz header would resample to 16,000x its length).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 768000
logger = logging.getLogger(__name__)
_UMASK = os.umask(0)
os.umask(_UMASK)


class AudioFileError(ValueError):
    """A file that cannot be used as audio; the message names the file."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def printable(path):
    """A path as text that any UTF-8 file or terminal takes: bytes of a file
    name that are not UTF-8 are shown as ``\\xNN``.

    Example
    -------
    >>> printable(os.fsdecode(b"caf\\xe9.wav"))
    'caf\\\\xe9.wav'
    """
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def audio_info(path):
    """Returns soundfile's info for ``path`` or raises AudioFileError.

    Example
    -------
    >>> audio_info("no/such/file.wav")
    Traceback (most recent call last):
     ...
    cmse_speechbrain.dataio.AudioFileError: no/such/file.wav: file not found
    >>> tmp = getfixture("tmp_path")
    >>> sf.write(tmp / "1hz.wav", [0.0] * 3000, 1)
    >>> audio_info(tmp / "1hz.wav")
    Traceback (most recent call last):
     ...
    cmse_speechbrain.dataio.AudioFileError: .../1hz.wav: sampling rate 1 Hz is
    outside 4000-768000 Hz (a broken header?)
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise AudioFileError(path, "file not found")
    try:
        info = sf.info(os.fsencode(path))  # bytes: a name that is not UTF-8 opens too
    except Exception as error:  # soundfile raises several types
        raise AudioFileError(path, f"not a readable audio file ({error})") from None
    if info.frames == 0:
        raise AudioFileError(path, "empty audio (0 samples)")
    # resampling would explode
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise AudioFileError(
            path,
            f"sampling rate {info.samplerate} Hz is outside "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz (a broken header?)",
        )
    return info


def read_audio_checked(
    path, sample_rate=16000, min_samples=1, segment_samples=None, rng=random
):
    """Reads a file as a mono float32 tensor at ``sample_rate``.

    Arguments
    ---------
    path : str or pathlib.Path
        Audio file (anything soundfile reads: WAV, FLAC, ...).
    sample_rate : int
        Rate of the returned signal; other rates are resampled.
    min_samples : int
        Shortest accepted signal (after resampling).
    segment_samples : int, optional
        Read only a random window of this many samples (at
        ``sample_rate``), so that long files are never loaded whole.
    rng : random.Random
        Picks the window.

    Returns
    -------
    torch.Tensor
        [samples], float32.

    Example
    -------
    >>> import numpy as np
    >>> tmp = getfixture("tmp_path")
    >>> sf.write(tmp / "stereo.wav", np.full((4800, 2), 0.25), 48000)
    >>> wav = read_audio_checked(tmp / "stereo.wav", 16000)
    >>> wav.shape
    torch.Size([1600])
    >>> read_audio_checked(tmp / "stereo.wav", 16000, segment_samples=400).shape
    torch.Size([400])
    """
    info = audio_info(path)
    start, frames = 0, -1
    if segment_samples:
        frames = -(-segment_samples * info.samplerate // sample_rate)
        if frames < info.frames:
            start = rng.randint(0, info.frames - frames)
        else:
            frames = -1
    try:
        audio, rate = sf.read(
            os.fsencode(path),
            start=start,
            frames=frames,
            dtype="float32",
            always_2d=True,
        )
    except Exception as error:
        raise AudioFileError(path, f"cannot decode audio ({error})") from None
    audio = torch.from_numpy(audio)
    if not torch.isfinite(audio).all():
        raise AudioFileError(path, "contains NaN or infinite samples")
    audio = audio.mean(dim=1) if info.channels > 1 else audio[:, 0]
    if rate != sample_rate:
        audio = AF.resample(audio, rate, sample_rate)
    if segment_samples:
        audio = audio[:segment_samples]
    if audio.numel() < min_samples:
        raise AudioFileError(
            path,
            f"too short: {audio.numel()} samples at {sample_rate} Hz, "
            f"need at least {min_samples}",
        )
    return audio.contiguous()


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temporary path next to ``path``; renames it to ``path`` on
    success, removes it on failure. Readers never see a partial file.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> with atomic_output(tmp / "out.txt") as partial:
    ...     _ = partial.write_text("done")
    >>> [p.name for p in tmp.iterdir()]
    ['out.txt']
    >>> with atomic_output(tmp / ("x" * 251 + ".txt")) as partial:  # the longest name
    ...     _ = partial.write_text("done")
    >>> sorted(len(p.name) for p in tmp.iterdir())
    [7, 255]
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a short temporary name, so that a 255-character file name still works
    # the writer's process id in the name tells a stale partial (remove_stale_partials)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"{TEMPORARY_PREFIX}{os.getpid()}-",
        suffix=path.suffix[:16],
        dir=path.parent,
    )
    os.close(fd)
    os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp makes 0600 files
    try:
        yield pathlib.Path(tmp_name)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


@contextlib.contextmanager
def scratch_file(folder, suffix=""):
    """Yields the path of an empty temporary file in ``folder``, named as
    :func:`atomic_output`'s partials (so that :func:`remove_stale_partials`
    removes it after a kill), and removes it when the block ends.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> with scratch_file(tmp, ".f32") as path:
    ...     path.name.startswith(TEMPORARY_PREFIX), path.suffix
    (True, '.f32')
    >>> list(tmp.iterdir())
    []
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f"{TEMPORARY_PREFIX}{os.getpid()}-", suffix=suffix, dir=folder
    )
    os.close(fd)
    try:
        yield pathlib.Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


class AudioBlocks:
    """Reads any part of an audio file, mono and checked, without reading
    the rest: a file of any length is read one block at a time.

    Samples are float32 and channels are averaged, as
    :func:`read_audio_checked` reads them; a block with NaN or infinite
    samples raises :class:`AudioFileError`, and so does a file that cannot
    be decoded. Use it as a context manager (or call :meth:`close`).

    Arguments
    ---------
    path : str or pathlib.Path
        The audio file (checked with :func:`audio_info`).

    Example
    -------
    >>> import numpy as np
    >>> tmp = getfixture("tmp_path")
    >>> sf.write(tmp / "ramp.wav", np.stack([np.arange(100) / 128] * 2, axis=1), 8000)
    >>> with AudioBlocks(tmp / "ramp.wav") as blocks:
    ...     blocks.frames, blocks.samplerate, (blocks.read(10, 13) * 128).tolist()
    (100, 8000, [10.0, 11.0, 12.0])
    """

    def __init__(self, path):
        self.path = path
        info = audio_info(path)
        self.frames, self.samplerate, self.channels = (
            info.frames,
            info.samplerate,
            info.channels,
        )
        try:
            self._file = sf.SoundFile(os.fsencode(path))
        except Exception as error:  # soundfile raises several types
            raise AudioFileError(path, f"not a readable audio file ({error})") from None

    def read(self, start, stop):
        """Samples ``[start, stop)`` (clipped to the file) as a [samples] tensor.

        Past the last frame that decodes (a file shorter than its header
        says), zeros.
        """
        start, stop = max(0, start), min(stop, self.frames)
        if stop <= start:
            return torch.zeros(0)
        try:
            self._file.seek(start)
            audio = self._file.read(stop - start, dtype="float32", always_2d=True)
        except Exception as error:
            raise AudioFileError(self.path, f"cannot decode audio ({error})") from None
        audio = torch.from_numpy(audio)
        if not torch.isfinite(audio).all():
            raise AudioFileError(self.path, "contains NaN or infinite samples")
        audio = audio.mean(dim=1) if self.channels > 1 else audio[:, 0]
        if audio.numel() < stop - start:
            audio = torch.nn.functional.pad(audio, (0, stop - start - audio.numel()))
        return audio.contiguous()

    def close(self):
        """Closes the file."""
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def remove_stale_partials(folder, legacy_age_seconds=3600):
    """Removes the partial files (:func:`atomic_output`) that a killed
    writer left in ``folder`` (recursively): those whose writer process no
    longer runs, and unnamed older ones. A live writer's are kept.

    Returns
    -------
    list of pathlib.Path
        The files removed.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> _ = (tmp / f"{TEMPORARY_PREFIX}{os.getpid()}-live.wav").write_text("")
    >>> _ = (tmp / f"{TEMPORARY_PREFIX}999999999-dead.wav").write_text("")
    >>> [p.name for p in remove_stale_partials(tmp)]
    ['.cmse-999999999-dead.wav']
    """
    import re
    import time

    removed = []
    for path in sorted(pathlib.Path(folder).rglob(f"{TEMPORARY_PREFIX}*")):
        if not path.is_file() or path.is_symlink():
            continue
        match = re.match(rf"{re.escape(TEMPORARY_PREFIX)}(\d+)-", path.name)
        if match:
            try:
                os.kill(int(match.group(1)), 0)
                continue  # its writer still runs
            except PermissionError:  # another user's process: running
                continue
            except (ProcessLookupError, OverflowError):  # no such process
                pass
        elif time.time() - path.stat().st_mtime < legacy_age_seconds:
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def write_audio_atomic(path, audio, sample_rate, subtype="PCM_16", scale_to_fit=False):
    """Writes audio to ``path`` through a temporary file and a rename.

    Arguments
    ---------
    path : str or pathlib.Path
        Destination; its format follows the extension (.wav, .flac).
    audio : torch.Tensor or numpy.ndarray
        [samples] or [samples, channels].
    sample_rate : int
        Sampling rate.
    subtype : str
        soundfile subtype, e.g. "PCM_16" or "FLOAT".
    scale_to_fit : bool
        If True and the peak exceeds 1, scale the signal down to peak 1
        rather than let an integer format clip it.

    Returns
    -------
    float
        The gain applied (1.0 unless scaled).

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> write_audio_atomic(tmp / "a.wav", torch.zeros(160), 16000)
    1.0
    >>> write_audio_atomic(
    ...     tmp / "b.wav", torch.full((160,), 2.0), 16000, scale_to_fit=True
    ... )
    0.5
    >>> sorted(p.name for p in tmp.iterdir())
    ['a.wav', 'b.wav']
    """
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().float().numpy()
    gain = 1.0
    peak = float(abs(audio).max()) if audio.size else 0.0
    if scale_to_fit and peak > 1.0:
        gain = 1.0 / peak
        audio = audio * gain
    with atomic_output(path) as partial:
        sf.write(str(partial), audio, sample_rate, subtype=subtype)
    return gain


def random_crop(signals, segment_samples, rng=random):
    """Crops aligned signals to the same random segment.

    Signals no longer than the segment are returned whole.

    Example
    -------
    >>> a = torch.arange(10.0)
    >>> x, y = random_crop([a, a * 2], 4)
    >>> bool((y == 2 * x).all()), x.numel()
    (True, 4)
    """
    length = signals[0].shape[-1]
    if segment_samples is None or segment_samples <= 0 or length <= segment_samples:
        return signals
    start = rng.randint(0, length - segment_samples)
    return [s[..., start : start + segment_samples] for s in signals]


def preload_audio(paths, sample_rate=16000, min_samples=1):
    """Reads every file once (checked, resampled) into memory: path -> tensor.

    For on-the-fly mixing from compressed files (FLAC, Opus), where decoding
    a random window for every training example would keep the data loader
    busier than the model. A progress bar shows the reading.

    Example
    -------
    >>> import numpy as np
    >>> tmp = getfixture("tmp_path")
    >>> sf.write(tmp / "a.wav", np.zeros(800), 16000)
    >>> loaded = preload_audio([str(tmp / "a.wav")])
    >>> {k.split("/")[-1]: v.shape for k, v in loaded.items()}
    {'a.wav': torch.Size([800])}
    """
    from tqdm import tqdm

    unique = sorted(set(paths))
    return {
        path: read_audio_checked(path, sample_rate, min_samples)
        for path in tqdm(
            unique, desc="reading training audio", unit="file", disable=len(unique) < 50
        )
    }


def _is_empty_manifest(path):
    with open(path, encoding="utf-8") as fin:
        return not json.load(fin)


def enhancement_dataio_prep(hparams):
    """Creates the train, valid and test DynamicItemDatasets of a recipe.

    Reads json manifests whose entries carry ``clean_wav``, ``length`` and,
    for paired data, ``noisy_wav`` (``{data_root}`` is replaced by
    ``data_folder``):

    * ``train_annotation``: paired entries are cropped to
      ``train_segment_seconds`` at a random offset, the same for both
      signals. With a ``mixer`` in the hparams (on-the-fly mixing) the
      entries need only ``clean_wav``: a random segment of it is read, never
      the whole file, and the Brain mixes the noisy input. With
      ``preload_train_audio`` every file is read once into memory instead
      and the segments are cut from there.
    * ``valid_annotation``: paired, fixed.
    * ``test_annotations`` (a dict name -> manifest) or ``test_annotation``
      (a single manifest, named ``test``): paired. An empty manifest (a
      subset the data lacks) is skipped with a warning.
    * ``real_annotation`` (optional): recordings without clean references,
      entries with ``noisy_wav`` only; returned as ``"real"``.

    Training items are sorted as ``sorting`` says.

    Arguments
    ---------
    hparams : dict
        The recipe's hyperparameters.

    Returns
    -------
    dict
        ``{"train": ..., "valid": ..., "test": {name: ...}}``, plus
        ``"real"`` when ``real_annotation`` is set.
    """
    sample_rate = hparams["sample_rate"]
    min_samples = hparams.get("min_audio_samples", 1)
    segment = int(hparams.get("train_segment_seconds", 0) * sample_rate)

    def read_pair(noisy_wav, clean_wav):
        noisy = read_audio_checked(noisy_wav, sample_rate, min_samples)
        clean = read_audio_checked(clean_wav, sample_rate, min_samples)
        if noisy.shape != clean.shape:
            raise AudioFileError(
                noisy_wav,
                f"{noisy.numel()} samples but its clean twin {clean_wav} "
                f"has {clean.numel()}",
            )
        return noisy, clean

    @sb.utils.data_pipeline.takes("noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def train_pipeline(noisy_wav, clean_wav):
        noisy, clean = random_crop(read_pair(noisy_wav, clean_wav), segment)
        yield noisy
        yield clean

    cache = {}  # clean files read once into memory (preload_train_audio)

    @sb.utils.data_pipeline.takes("clean_wav")
    @sb.utils.data_pipeline.provides("clean_sig")
    def clean_train_pipeline(clean_wav):
        if clean_wav in cache:
            return random_crop([cache[clean_wav]], segment)[0].clone()
        return read_audio_checked(clean_wav, sample_rate, min_samples, segment)

    @sb.utils.data_pipeline.takes("noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def eval_pipeline(noisy_wav, clean_wav):
        noisy, clean = read_pair(noisy_wav, clean_wav)
        yield noisy
        yield clean

    @sb.utils.data_pipeline.takes("noisy_wav")
    @sb.utils.data_pipeline.provides("noisy_sig")
    def noisy_only_pipeline(noisy_wav):
        return read_audio_checked(noisy_wav, sample_rate, min_samples)

    def paired_set(manifest, pipeline=eval_pipeline):
        return sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=manifest,
            replacements={"data_root": hparams["data_folder"]},
            dynamic_items=[pipeline],
            output_keys=["id", "noisy_sig", "clean_sig"],
        )

    if hparams.get("mixer") is not None:
        train = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=hparams["train_annotation"],
            replacements={"data_root": hparams["data_folder"]},
        )
        if hparams.get("preload_train_audio"):
            cache.update(
                preload_audio(
                    [entry["clean_wav"] for entry in train.data.values()],
                    sample_rate,
                    min_samples,
                )
            )
        train.add_dynamic_item(clean_train_pipeline)
        train.set_output_keys(["id", "clean_sig"])
    else:
        train = paired_set(hparams["train_annotation"], train_pipeline)
    test_manifests = hparams.get("test_annotations") or {
        "test": hparams["test_annotation"]
    }
    datasets = {
        "train": train,
        "valid": paired_set(hparams["valid_annotation"]),
        "test": {},
    }
    for name, manifest in test_manifests.items():
        if _is_empty_manifest(manifest):  # e.g. a DNS test subset the data lacks
            logger.warning("Test set %s (%s) is empty, skipped", name, manifest)
            continue
        datasets["test"][name] = paired_set(manifest)
    real_manifest = hparams.get("real_annotation")
    if real_manifest and _is_empty_manifest(real_manifest):
        logger.warning("No recordings without reference in %s, skipped", real_manifest)
    elif real_manifest:
        datasets["real"] = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=hparams["real_annotation"],
            replacements={"data_root": hparams["data_folder"]},
            dynamic_items=[noisy_only_pipeline],
            output_keys=["id", "noisy_sig"],
        )
    sorting = hparams.get("sorting", "random")
    if sorting in ("ascending", "descending"):
        datasets["train"] = datasets["train"].filtered_sorted(
            sort_key="length", reverse=sorting == "descending"
        )
        hparams["train_dataloader_opts"]["shuffle"] = False
    elif sorting != "random":
        raise ValueError(
            f"sorting must be random, ascending or descending, got {sorting!r}"
        )
    return datasets
