"""Data preparation for the Deep Noise Suppression (DNS) Challenge data.

Expects the DNS-Challenge layout (Interspeech 2020 / ICASSP 2021) under
``data_folder``; every folder name is an argument (a YAML key in the
recipe)::

    clean/                          clean speech, searched recursively
    noise/                          noise clips, searched recursively
    impulse_responses/              optional; recursive (SLR26/..., SLR28/...)
    test_set/synthetic/no_reverb/{clean,noisy}/     optional
    test_set/synthetic/with_reverb/{clean,noisy}/   optional
    test_set/real_recordings/       optional; no clean references

and writes to ``save_folder``:

* ``train.json``: clean speech only (``clean_wav``, ``length`` in
  seconds); the noisy input is mixed on the fly during training. Lengths
  come from the file headers (no audio is decoded) and the manifest is
  written while the folders are walked, so it scales to the ~500 k files of
  the full data. Files at another rate need no cache: training reads a
  random window of each file and resamples it.
* ``noise.csv`` and ``rir.csv``: the augment CSVs (SpeechBrain's format)
  that :class:`cmse_speechbrain.mixing.OnTheFlyMixer` reads
  (:func:`cmse_speechbrain.mixing.write_augment_csv`).
* ``valid.json``: a fixed validation set. ``valid_count`` clean files (or a
  fraction of them when ``valid_count < 1``), picked by a hash of their path
  and ``valid_seed``, are held out of training and mixed once, with the
  same :class:`cmse_speechbrain.mixing.OnTheFlyMixer` as training, under
  ``valid_seed``; the pairs are written to ``valid_mixtures/``.
* ``test_<subset>.json`` for each synthetic test subset (noisy
  ``..._fileid_N.wav`` paired with clean ``clean_fileid_N.wav``), and
  ``real.json`` for the real recordings. A subset that is absent gets an
  empty manifest, which the recipe skips.

Preparation is skipped when the manifests exist for the same options. Bad
data stops it with the file or folder named: a missing ``clean`` folder, an
empty noise folder, an unreadable or too short file, a noisy test file
without its clean twin (or the reverse), a test pair of different lengths.

The full data (hundreds of GB) is not downloaded by the recipe: get it from
https://github.com/microsoft/DNS-Challenge (branch ``interspeech2020/master``
or ``icassp2021-final``, CC BY 4.0).

Authors
 * cmse-speechbrain contributors 2026
"""

import hashlib
import heapq
import json
import logging
import os
import pathlib
import re

import torch

from cmse_speechbrain.dataio import (
    AUDIO_EXTENSIONS,
    AudioFileError,
    atomic_output,
    audio_info,
    read_audio_checked,
    write_audio_atomic,
)
from cmse_speechbrain.mixing import OnTheFlyMixer, write_augment_csv

logger = logging.getLogger(__name__)

OPTIONS_FILE = "prepare_options.json"
FILEID = re.compile(r"fileid_(\d+)")


def walk_audio(folder):
    """Yields the audio files under ``folder``, recursively, in a fixed order.

    Directories are read one at a time (``os.scandir``), so a folder of
    hundreds of thousands of files is never listed recursively in memory.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> (tmp / "b").mkdir()
    >>> for name in ["b/2.flac", "1.wav", "notes.txt"]:
    ...     _ = (tmp / name).write_bytes(b"")
    >>> [p.relative_to(tmp).as_posix() for p in walk_audio(tmp)]
    ['1.wav', 'b/2.flac']
    """
    with os.scandir(folder) as entries:
        entries = sorted(entries, key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            yield from walk_audio(entry.path)
        elif entry.is_file() and entry.name.lower().endswith(AUDIO_EXTENSIONS):
            yield pathlib.Path(entry.path)


def _utterance_id(path, root):
    return path.relative_to(root).with_suffix("").as_posix().replace("/", "__")


def _manifest_path(path, data_folder):
    """``{data_root}/...`` for files inside the data folder, else absolute."""
    try:
        return "{data_root}/" + path.resolve().relative_to(data_folder).as_posix()
    except ValueError:
        return str(path.resolve())


def _held_out_key(path, root, seed):
    text = f"{seed}:{path.relative_to(root).as_posix()}".encode("utf-8")
    return int.from_bytes(hashlib.sha1(text).digest()[:8], "big")


def _existing_folder(data_folder, name, what):
    folder = data_folder / name
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: missing DNS {what} folder")
    return folder


def _select_valid(clean_dirs, data_folder, valid_count, seed):
    """Paths held out for validation: the smallest hashes (streamed)."""
    if 0 < valid_count < 1:  # a fraction: keep every hash below the threshold
        threshold = valid_count * 2**64
        return {
            path
            for folder in clean_dirs
            for path in walk_audio(folder)
            if _held_out_key(path, data_folder, seed) < threshold
        }
    heap = []  # the valid_count smallest keys, as a max-heap
    for folder in clean_dirs:
        for path in walk_audio(folder):
            item = (-_held_out_key(path, data_folder, seed), str(path))
            if len(heap) < int(valid_count):
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    return {pathlib.Path(path) for _, path in heap}


def _write_json(path, data):
    with atomic_output(path) as partial:
        partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _write_train_manifest(
    path, clean_dirs, data_folder, held_out, sample_rate, min_samples
):
    """Streams the clean files not held out into ``path``; returns their count."""
    count = 0
    with atomic_output(path) as partial, open(partial, "w", encoding="utf-8") as out:
        out.write("{")
        for folder in clean_dirs:
            for wav in walk_audio(folder):
                if wav in held_out:
                    continue
                info = audio_info(wav)
                if info.frames * sample_rate < min_samples * info.samplerate:
                    raise AudioFileError(
                        wav, f"too short: {info.frames} samples at {info.samplerate} Hz"
                    )
                entry = {
                    "clean_wav": _manifest_path(wav, data_folder),
                    "length": info.frames / info.samplerate,
                }
                key = json.dumps(_utterance_id(wav, data_folder))
                out.write(f"{',' if count else ''}\n  {key}: {json.dumps(entry)}")
                count += 1
        out.write("\n}\n")
    return count


def _valid_mixer(noise_csv, rir_csv, snr_low, snr_high, reverb_prob, reverb_target):
    # noises and RIRs are drawn from the random state that _make_valid_set
    # seeds with valid_seed, so the validation set depends on it alone
    return OnTheFlyMixer(
        noise_csv,
        snr_low=snr_low,
        snr_high=snr_high,
        level_low=-25.0,
        level_high=-25.0,
        rir_csv=rir_csv if reverb_prob > 0 else None,
        reverb_prob=reverb_prob,
        reverb_target=reverb_target,
    )


def _make_valid_set(
    held_out,
    data_folder,
    save_folder,
    mixer_options,
    valid_seed,
    valid_max_seconds,
    sample_rate,
    min_samples,
):
    """Mixes the held-out files once (seeded) into noisy/clean WAV pairs."""
    folder = save_folder / "valid_mixtures"
    stamp = folder / "options.json"
    options = dict(
        mixer_options,
        valid_seed=valid_seed,
        valid_max_seconds=valid_max_seconds,
        files=sorted(str(p) for p in held_out),
    )
    entries = {}
    for path in sorted(held_out):
        utt_id = _utterance_id(path, data_folder)
        entries[utt_id] = {
            "noisy_wav": str((folder / "noisy" / f"{utt_id}.wav").resolve()),
            "clean_wav": str((folder / "clean" / f"{utt_id}.wav").resolve()),
        }
    done = stamp.exists() and json.loads(stamp.read_text(encoding="utf-8")) == options
    if done and all(pathlib.Path(e["noisy_wav"]).exists() for e in entries.values()):
        logger.info("Validation mixtures in %s are up to date", folder)
    else:
        mixer = _valid_mixer(**mixer_options)
        max_samples = (
            int(valid_max_seconds * sample_rate) if valid_max_seconds else None
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(valid_seed)
            for path, entry in zip(sorted(held_out), entries.values()):
                clean = read_audio_checked(path, sample_rate, min_samples)[:max_samples]
                noisy, target = mixer(clean.unsqueeze(0), torch.ones(1))
                write_audio_atomic(
                    entry["noisy_wav"], noisy[0], sample_rate, subtype="FLOAT"
                )
                write_audio_atomic(
                    entry["clean_wav"], target[0], sample_rate, subtype="FLOAT"
                )
        _write_json(stamp, options)
    for entry in entries.values():
        entry["length"] = audio_info(entry["noisy_wav"]).frames / sample_rate
    return entries


def _by_fileid(folder):
    files = {}
    for path in walk_audio(folder):
        match = FILEID.search(path.stem)
        if match is None:
            raise AudioFileError(path, "no 'fileid_N' in the name to pair it by")
        fileid = f"fileid_{match.group(1)}"
        if fileid in files:
            raise AudioFileError(path, f"{fileid} also in {files[fileid]}")
        files[fileid] = path
    return files


def _synthetic_test_set(subset_dir, data_folder):
    """Pairs ``noisy/..._fileid_N`` with ``clean/clean_fileid_N``."""
    noisy_dir = _existing_folder(subset_dir, "noisy", "test")
    clean_dir = _existing_folder(subset_dir, "clean", "test")
    noisy, clean = _by_fileid(noisy_dir), _by_fileid(clean_dir)
    if not noisy:
        raise FileNotFoundError(f"{noisy_dir}: no audio files (.wav, .flac)")
    for fileid, path in noisy.items():
        if fileid not in clean:
            raise FileNotFoundError(
                f"{path}: no clean twin clean_{fileid}.* in {clean_dir}"
            )
    for fileid, path in clean.items():
        if fileid not in noisy:
            raise FileNotFoundError(
                f"{path}: no noisy twin *_{fileid}.* in {noisy_dir}"
            )
    entries = {}
    for fileid in sorted(noisy, key=lambda f: int(f.split("_")[1])):
        noisy_info, clean_info = audio_info(noisy[fileid]), audio_info(clean[fileid])
        if (noisy_info.frames, noisy_info.samplerate) != (
            clean_info.frames,
            clean_info.samplerate,
        ):
            raise AudioFileError(
                noisy[fileid],
                f"{noisy_info.frames} samples at {noisy_info.samplerate} Hz, but its "
                f"clean twin {clean[fileid]} has {clean_info.frames} at "
                f"{clean_info.samplerate} Hz",
            )
        entries[fileid] = {
            "noisy_wav": _manifest_path(noisy[fileid], data_folder),
            "clean_wav": _manifest_path(clean[fileid], data_folder),
            "length": noisy_info.frames / noisy_info.samplerate,
        }
    return entries


def prepare_dns(
    data_folder,
    save_folder,
    clean_folders=("clean",),
    noise_folders=("noise",),
    rir_folders=("impulse_responses",),
    synthetic_folder="test_set/synthetic",
    test_subsets=("no_reverb", "with_reverb"),
    real_folder="test_set/real_recordings",
    valid_count=100,
    valid_seed=1234,
    valid_max_seconds=10.0,
    snr_low=0.0,
    snr_high=20.0,
    reverb_prob=0.0,
    reverb_target="reverberant",
    sample_rate=16000,
    min_samples=512,
    skip_prep=False,
):
    """Writes the manifests and augment CSVs of the DNS recipe.

    Arguments
    ---------
    data_folder : str
        Root of the DNS-Challenge data.
    save_folder : str
        Where the manifests, CSVs, cached noise copies and validation
        mixtures go.
    clean_folders, noise_folders, rir_folders : list of str
        Folders under ``data_folder`` (searched recursively). RIR folders
        are optional.
    synthetic_folder : str
        Folder of the synthetic test subsets (optional).
    test_subsets : list of str
        Subsets of ``synthetic_folder``, each with ``clean/`` and ``noisy/``.
    real_folder : str
        Real recordings without references (optional).
    valid_count : int or float
        Clean files held out for validation, or a fraction if below 1.
    valid_seed : int
        Seeds the choice of these files and their mixing.
    valid_max_seconds : float
        Validation utterances are cut to this length (``None``: whole).
    snr_low, snr_high : float
        SNR range (dB) of the validation mixtures, as in training.
    reverb_prob : float
        Share of validation utterances reverberated (needs RIRs).
    reverb_target : str
        ``"reverberant"`` or ``"dry"`` (see OnTheFlyMixer).
    sample_rate : int
        Rate the recipe works at.
    min_samples : int
        Shortest accepted file (at ``sample_rate``).
    skip_prep : bool
        If True, do nothing.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> prepare_dns("recipes/DNS/mini_dns", tmp, valid_count=2, valid_max_seconds=1.0)
    >>> train = json.loads((tmp / "train.json").read_text())
    >>> valid = json.loads((tmp / "valid.json").read_text())
    >>> len(train), len(valid), set(train) & set(valid)
    (12, 2, set())
    >>> sorted(json.loads((tmp / "test_no_reverb.json").read_text()))
    ['fileid_170', 'fileid_44', 'fileid_58']
    >>> json.loads((tmp / "test_with_reverb.json").read_text())  # not shipped
    {}
    """
    if skip_prep:
        return
    data_folder = pathlib.Path(data_folder).resolve()
    save_folder = pathlib.Path(save_folder)
    options = {
        "data_folder": str(data_folder),
        "clean_folders": list(clean_folders),
        "noise_folders": list(noise_folders),
        "rir_folders": list(rir_folders),
        "synthetic_folder": synthetic_folder,
        "test_subsets": list(test_subsets),
        "real_folder": real_folder,
        "valid_count": valid_count,
        "valid_seed": valid_seed,
        "valid_max_seconds": valid_max_seconds,
        "snr": [snr_low, snr_high],
        "reverb": [reverb_prob, reverb_target],
        "sample_rate": sample_rate,
        "min_samples": min_samples,
    }
    manifests = ["train.json", "valid.json", "noise.csv", "rir.csv", "real.json"]
    manifests += [f"test_{name}.json" for name in test_subsets]
    options_path = save_folder / OPTIONS_FILE
    if all((save_folder / m).exists() for m in manifests) and options_path.exists():
        if json.loads(options_path.read_text(encoding="utf-8")) == options:
            logger.info("DNS manifests exist in %s, skipping preparation", save_folder)
            return
    if not data_folder.is_dir():
        raise FileNotFoundError(f"{data_folder}: DNS data folder not found")
    if valid_count <= 0:
        raise ValueError(f"valid_count must be positive, got {valid_count}")
    clean_dirs = [
        _existing_folder(data_folder, name, "clean speech") for name in clean_folders
    ]

    # Noise and impulse responses: the augment CSVs
    noise_files = []
    for name in noise_folders:
        folder = _existing_folder(data_folder, name, "noise")
        found = list(walk_audio(folder))
        if not found:
            raise FileNotFoundError(
                f"{folder}: no audio files (.wav, .flac) in the noise folder"
            )
        noise_files += found
    write_augment_csv(
        noise_files,
        save_folder / "noise.csv",
        save_folder / f"noise_{sample_rate}",
        sample_rate,
        min_samples,
    )
    rir_files = [
        path
        for name in rir_folders
        if (data_folder / name).is_dir()
        for path in walk_audio(data_folder / name)
    ]
    if reverb_prob > 0 and not rir_files:
        raise FileNotFoundError(
            f"{data_folder}: reverb_prob={reverb_prob} but no impulse responses in "
            f"{', '.join(rir_folders)}"
        )
    write_augment_csv(
        rir_files,
        save_folder / "rir.csv",
        save_folder / f"rir_{sample_rate}",
        sample_rate,
    )
    logger.info(
        "DNS: %d noise files, %d impulse responses", len(noise_files), len(rir_files)
    )

    # Clean speech: held-out validation files, the rest streamed to train.json
    held_out = _select_valid(clean_dirs, data_folder, valid_count, valid_seed)
    count = _write_train_manifest(
        save_folder / "train.json",
        clean_dirs,
        data_folder,
        held_out,
        sample_rate,
        min_samples,
    )
    if not count or not held_out:
        raise ValueError(
            f"{', '.join(str(d) for d in clean_dirs)}: {count} training and "
            f"{len(held_out)} validation files; need at least one of each "
            f"(valid_count={valid_count})"
        )
    mixer_options = {
        "noise_csv": str((save_folder / "noise.csv").resolve()),
        "rir_csv": str((save_folder / "rir.csv").resolve()),
        "snr_low": snr_low,
        "snr_high": snr_high,
        "reverb_prob": reverb_prob,
        "reverb_target": reverb_target,
    }
    valid = _make_valid_set(
        held_out,
        data_folder,
        save_folder,
        mixer_options,
        valid_seed,
        valid_max_seconds,
        sample_rate,
        min_samples,
    )
    _write_json(save_folder / "valid.json", valid)
    logger.info("DNS: %d training files, %d validation mixtures", count, len(valid))

    # Test sets: synthetic pairs and real recordings
    for name in test_subsets:
        subset_dir = data_folder / synthetic_folder / name
        entries = (
            _synthetic_test_set(subset_dir, data_folder) if subset_dir.is_dir() else {}
        )
        if not entries:
            logger.warning("DNS: no synthetic test subset %s, skipped", subset_dir)
        _write_json(save_folder / f"test_{name}.json", entries)
    real = {}
    if real_folder and (data_folder / real_folder).is_dir():
        for path in walk_audio(data_folder / real_folder):
            info = audio_info(path)
            real[_utterance_id(path, data_folder / real_folder)] = {
                "noisy_wav": _manifest_path(path, data_folder),
                "length": info.frames / info.samplerate,
            }
    _write_json(save_folder / "real.json", real)
    _write_json(options_path, options)
