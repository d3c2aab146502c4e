"""Data preparation for VoiceBank-DEMAND (Valentini-Botinhao et al., 2017).

Expects the dataset's standard folders under ``data_folder``::

    clean_trainset_28spk_wav/  noisy_trainset_28spk_wav/
    clean_testset_wav/         noisy_testset_wav/

(the 48 kHz release of the University of Edinburgh; ``.wav`` or ``.flac``).
Files not at ``sample_rate`` or not mono are resampled / mixed down once
into ``<save_folder>/audio_<rate>/`` and the cached copies are used from
then on. Writes ``train.json``, ``valid.json`` and ``test.json`` to
``save_folder``; the speakers in ``valid_speakers`` are held out of the
training set as validation (SpeechBrain's recipe holds out p226 and p287).

Bad data stops the preparation with a message that names the file: a noisy
file without its clean twin (or the reverse), a pair whose lengths differ,
an unreadable or empty file, an empty or missing folder.

``download_voicebank`` fetches the dataset (about 2.5 GB zipped) for users;
it is never called unless asked for (``download: True``).

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import logging
import pathlib

from speechbrain.utils.data_utils import download_file

from cmse_speechbrain.dataio import (
    AUDIO_EXTENSIONS,
    AudioFileError,
    atomic_output,
    audio_info,
    read_audio_checked,
    write_audio_atomic,
)

logger = logging.getLogger(__name__)

SPLIT_FOLDERS = {
    "train": ("noisy_trainset_28spk_wav", "clean_trainset_28spk_wav"),
    "test": ("noisy_testset_wav", "clean_testset_wav"),
}
DATASHARE_URL = "https://datashare.ed.ac.uk/bitstream/handle/10283/2791/{}.zip"
MANIFESTS = ("train.json", "valid.json", "test.json")
OPTIONS_FILE = "prepare_options.json"


def download_voicebank(destination):
    """Downloads and unpacks the four VoiceBank-DEMAND folders.

    Arguments
    ---------
    destination : str
        Folder that receives ``clean_trainset_28spk_wav`` etc.
    """
    destination = pathlib.Path(destination)
    for folders in SPLIT_FOLDERS.values():
        for folder in folders:
            if (destination / folder).is_dir():
                continue
            download_file(
                DATASHARE_URL.format(folder),
                str(destination / f"{folder}.zip"),
                unpack=True,
                dest_unpack=str(destination),
            )


def _audio_files(folder):
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    }


def _pairs(data_folder, noisy_name, clean_name):
    """Matches noisy and clean files by name; raises on any orphan."""
    noisy_dir, clean_dir = data_folder / noisy_name, data_folder / clean_name
    noisy, clean = _audio_files(noisy_dir), _audio_files(clean_dir)
    if not noisy:
        raise FileNotFoundError(f"{noisy_dir}: no audio files (.wav, .flac)")
    for stem, path in noisy.items():
        if stem not in clean:
            raise FileNotFoundError(f"{path}: no clean twin {stem}.* in {clean_dir}")
    for stem, path in clean.items():
        if stem not in noisy:
            raise FileNotFoundError(f"{path}: no noisy twin {stem}.* in {noisy_dir}")
    return [(stem, noisy[stem], clean[stem]) for stem in noisy]


def _usable_path(path, data_folder, cache_folder, sample_rate):
    """Manifest path of ``path``: as is, or its cached mono/resampled copy."""
    info = audio_info(path)
    if info.samplerate == sample_rate and info.channels == 1:
        return "{data_root}/" + path.relative_to(data_folder).as_posix(), info
    cached = cache_folder / path.relative_to(data_folder).with_suffix(".wav")
    if not cached.exists() or cached.stat().st_mtime < path.stat().st_mtime:
        write_audio_atomic(  # float: lossless, no clipping of resampling overshoot
            cached, read_audio_checked(path, sample_rate), sample_rate, subtype="FLOAT"
        )
    return str(cached.resolve()), info


def _manifest_entry(stem, noisy, clean, data_folder, cache_folder, sample_rate):
    noisy_path, noisy_info = _usable_path(noisy, data_folder, cache_folder, sample_rate)
    clean_path, clean_info = _usable_path(clean, data_folder, cache_folder, sample_rate)
    if (noisy_info.frames, noisy_info.samplerate) != (
        clean_info.frames,
        clean_info.samplerate,
    ):
        raise AudioFileError(
            noisy,
            f"{noisy_info.frames} samples at {noisy_info.samplerate} Hz, but its "
            f"clean twin {clean} has {clean_info.frames} at {clean_info.samplerate} Hz",
        )
    return {
        "noisy_wav": noisy_path,
        "clean_wav": clean_path,
        "length": noisy_info.frames / noisy_info.samplerate,
        "speaker": stem.split("_")[0],
    }


def _write_json(path, data):
    with atomic_output(path) as partial:
        partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def prepare_voicebank(
    data_folder,
    save_folder,
    valid_speakers=("p226", "p287"),
    sample_rate=16000,
    skip_prep=False,
    download=False,
):
    """Writes the train/valid/test json manifests of VoiceBank-DEMAND.

    Arguments
    ---------
    data_folder : str
        Folder holding the four VoiceBank-DEMAND folders.
    save_folder : str
        Where the manifests (and resampled copies) go.
    valid_speakers : list of str
        Training speakers held out as the validation set.
    sample_rate : int
        Rate the recipe works at.
    skip_prep : bool
        If True, do nothing.
    download : bool
        If True and the folders are missing, download the dataset first.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> prepare_voicebank("recipes/VoiceBank/mini_voicebank", tmp)
    >>> import json
    >>> train = json.loads((tmp / "train.json").read_text())
    >>> valid = json.loads((tmp / "valid.json").read_text())
    >>> sorted({e["speaker"] for e in valid.values()})
    ['p226', 'p287']
    >>> any(e["speaker"] in ("p226", "p287") for e in train.values())
    False
    """
    if skip_prep:
        return
    data_folder = pathlib.Path(data_folder).resolve()
    save_folder = pathlib.Path(save_folder)
    options = {
        "data_folder": str(data_folder),
        "valid_speakers": sorted(valid_speakers),
        "sample_rate": sample_rate,
    }
    options_path = save_folder / OPTIONS_FILE
    if all((save_folder / m).exists() for m in MANIFESTS) and options_path.exists():
        if json.loads(options_path.read_text(encoding="utf-8")) == options:
            logger.info("VoiceBank manifests exist in %s, skipping", save_folder)
            return
    missing = [
        f
        for folders in SPLIT_FOLDERS.values()
        for f in folders
        if not (data_folder / f).is_dir()
    ]
    if missing and download:
        download_voicebank(data_folder)
        missing = [f for f in missing if not (data_folder / f).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{data_folder}: missing VoiceBank-DEMAND folder(s) {', '.join(missing)}"
            " (pass --download=True to fetch the dataset)"
        )
    cache_folder = save_folder / f"audio_{sample_rate}"
    manifests = {"train": {}, "valid": {}, "test": {}}
    for split, (noisy_name, clean_name) in SPLIT_FOLDERS.items():
        pairs = _pairs(data_folder, noisy_name, clean_name)
        logger.info("Preparing %d %s pairs from %s", len(pairs), split, data_folder)
        for stem, noisy, clean in pairs:
            entry = _manifest_entry(
                stem, noisy, clean, data_folder, cache_folder, sample_rate
            )
            target = split
            if split == "train" and entry["speaker"] in valid_speakers:
                target = "valid"
            manifests[target][stem] = entry
    for split, entries in manifests.items():
        if not entries:
            raise ValueError(
                f"{data_folder}: the {split} set is empty (valid speakers: "
                f"{', '.join(valid_speakers)})"
            )
        _write_json(save_folder / f"{split}.json", entries)
    _write_json(options_path, options)
