"""Data preparation for ASR on VoiceBank-DEMAND (transcribed noisy speech).

VoiceBank-DEMAND ships a transcript ``<id>.txt`` next to every recording::

    <data_folder>/noisy_trainset_28spk_wav/p226_001.wav   (or .flac; any rate)
    <data_folder>/clean_trainset_28spk_wav/...
    <data_folder>/trainset_28spk_txt/p226_001.txt
    <data_folder>/noisy_testset_wav/...   clean_testset_wav/...   testset_txt/...

``prepare_voicebank_asr`` writes ``train.json``, ``valid.json`` and
``test.json`` (valid = the ``valid_speakers`` of the training folders) with
``wav`` (``{data_root}``-relative), ``length`` (seconds), ``words``
(normalised: upper case, no punctuation) and ``spk_id``. A recording
without its transcript, an empty transcript, a bad audio file or a missing
folder stops preparation with the file named.

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import logging
import pathlib

from cmse_speechbrain.dataio import AUDIO_EXTENSIONS, atomic_output, audio_info
from cmse_speechbrain.recognizers import normalize_text

logger = logging.getLogger(__name__)

SPLIT_FOLDERS = {
    "train": ("trainset_28spk_wav", "trainset_28spk_txt"),
    "test": ("testset_wav", "testset_txt"),
}


def _entries(data_folder, split, input_type):
    wav_dir = data_folder / f"{input_type}_{SPLIT_FOLDERS[split][0]}"
    txt_dir = data_folder / SPLIT_FOLDERS[split][1]
    for folder in (wav_dir, txt_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: missing folder")
    files = sorted(p for p in wav_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"{wav_dir}: no .wav or .flac file")
    entries = {}
    for path in files:
        transcript = txt_dir / f"{path.stem}.txt"
        if not transcript.is_file():
            raise FileNotFoundError(f"{path}: no transcript {transcript}")
        words = normalize_text(transcript.read_text(encoding="utf-8", errors="replace"))
        if not words:
            raise ValueError(f"{transcript}: empty transcript")
        info = audio_info(path)
        entries[path.stem] = {
            "wav": "{data_root}/" + path.relative_to(data_folder).as_posix(),
            "length": info.frames / info.samplerate,
            "words": words,
            "spk_id": path.stem.split("_")[0],
        }
    return entries


def _write_json(entries, path):
    with atomic_output(path) as partial:
        partial.write_text(json.dumps(entries, indent=2), encoding="utf-8")


def prepare_voicebank_asr(
    data_folder,
    save_folder,
    valid_speakers=("p226", "p287"),
    input_type="noisy",
    skip_prep=False,
):
    """Writes the train/valid/test manifests of transcribed VoiceBank audio.

    Arguments
    ---------
    data_folder : str or pathlib.Path
        The dataset (VoiceBank-DEMAND layout, see the module docstring).
    save_folder : str or pathlib.Path
        Where ``train.json``, ``valid.json`` and ``test.json`` go.
    valid_speakers : list of str
        Training speakers held out as the validation set.
    input_type : str
        ``"noisy"`` (default) or ``"clean"``: which recordings to list.
    skip_prep : bool
        If True, do nothing.

    Example
    -------
    >>> data = pathlib.Path(__file__).resolve().parent / "mini_asr"
    >>> out = getfixture("tmp_path")
    >>> prepare_voicebank_asr(data, out, valid_speakers=["aew"])
    >>> test = json.loads((out / "test.json").read_text())
    >>> test["hvd_001"]["words"]
    'THE BIRCH CANOE SLID ON THE SMOOTH PLANKS'
    >>> sorted(json.loads((out / "valid.json").read_text()))
    ['aew_001', 'aew_002', 'aew_003']
    """
    if skip_prep:
        return
    if input_type not in ("noisy", "clean"):
        raise ValueError(f"input_type must be 'noisy' or 'clean', got {input_type!r}")
    data_folder = pathlib.Path(data_folder)
    save_folder = pathlib.Path(save_folder)
    if not data_folder.is_dir():
        raise FileNotFoundError(f"{data_folder}: no such data folder")
    train = _entries(data_folder, "train", input_type)
    valid_speakers = set(valid_speakers)
    valid = {k: v for k, v in train.items() if v["spk_id"] in valid_speakers}
    train = {k: v for k, v in train.items() if v["spk_id"] not in valid_speakers}
    if not valid or not train:
        raise ValueError(
            f"{data_folder}: valid_speakers {sorted(valid_speakers)} leave "
            f"{len(train)} training and {len(valid)} validation utterances"
        )
    test = _entries(data_folder, "test", input_type)
    save_folder.mkdir(parents=True, exist_ok=True)
    for name, entries in [("train", train), ("valid", valid), ("test", test)]:
        _write_json(entries, save_folder / f"{name}.json")
    logger.info(
        "ASR manifests: %d train, %d valid, %d test utterances",
        len(train),
        len(valid),
        len(test),
    )
