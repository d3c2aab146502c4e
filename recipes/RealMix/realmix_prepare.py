"""Data preparation of the RealMix recipe: real speech x real noise, mixed on the fly.

The data folder has the layout of the project's real-audio collection
(``../shared/data``, see its README): clean read speech from about 270
speakers, real noise recordings in about 25 types, room impulse responses,
the real VoiceBank-DEMAND test pairs, DNS-Challenge test pairs and real
noisy recordings. The split is fixed by rules written here, so that
speakers and noise files never cross between training, validation and test:

* **speech, training**: LibriSpeech train-clean-100 speakers whose id hashes
  outside the two held-out groups, the VCTK speakers (``vctk_extra``,
  ``vctk_p234``);
* **speech, validation**: the LibriSpeech speakers of hash group 0, and the
  six real VoiceBank-DEMAND training pairs of speaker p287;
* **speech, synthetic test**: the LibriSpeech speakers of hash group 1;
* **never used here**: the VoiceBank-DEMAND test speakers p232/p257 (their
  real pairs are a test set), and the read sentences of the ASR benchmark
  (``asr_samples``, ``transcribed``, ``ljspeech``, ``cmu_arctic``);
* **noise**: in each type folder of ``noise_extra``, files sorted by name,
  file ``i`` goes to validation when ``i % 7 == 2``, to test when
  ``i % 7 == 5``, else to training; ``noise`` and ``noise_ch`` train,
  except the recordings the ASR benchmark mixes in (``ASR_NOISES``);
* **impulse responses**: ``rir`` (training only);
* **speechocean762** (optional, ``speechocean_folder``: OpenSLR 101 as it
  ships, ``WAVE/SPEAKER*/``, ``train/wav.scp``, ``test/wav.scp`` and their
  ``utt2spk``): every utterance of its training speakers trains; of its
  test speakers, those of :func:`speaker_group` 0 of 5 (about 25 of 125)
  give their first ``speechocean_valid_utterances`` utterances (whole, one
  segment each) to validation; the other test speakers are never read here
  (they are kept for an ASR test set).

Outputs in ``save_folder``: ``train.json`` (clean files; the Brain mixes),
``valid.json`` (fixed mixtures of validation speakers x validation noises,
two segments per file, plus the p287 pairs), ``test_voicebank.json``,
``test_synthetic.json`` (fixed mixtures of test speakers x test noises),
``test_dns.json``, ``real.json`` (recordings without reference, for
DNSMOS), ``noise_train.csv`` and ``rir.csv`` (for the mixer) and
``split.json`` (every file by role). A folder missing from ``data_folder``
leaves its part empty (a test set is then skipped).

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import logging
import pathlib
import zlib

from cmse_speechbrain.dataio import atomic_output, audio_info
from cmse_speechbrain.mixing import write_augment_csv, write_fixed_mixtures

logger = logging.getLogger(__name__)
AUDIO = (".wav", ".flac", ".ogg", ".opus")
ASR_NOISES = [
    "noise/dude_miaowing",
    "noise/noise5",
    "noise_ch/ch03_sm001",
    "noise_ch/ch03_sm002",
    "noise_ch/ch03_sm003",
]
OPTIONS_FILE = "realmix_prepare.json"


def audio_files(folder):
    """Audio files under ``folder`` (recursively), sorted; none if it is absent.

    Example
    -------
    >>> len(audio_files("recipes/VoiceBank/mini_voicebank/clean_testset_wav")) > 0
    True
    >>> audio_files("no/such/folder")
    []
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO and p.is_file()
    )


def speaker_group(speaker, groups=10):
    """Stable group of a speaker id (CRC-32 of its name modulo ``groups``).

    Example
    -------
    >>> speaker_group("103"), speaker_group("1034")
    (8, 7)
    """
    return zlib.crc32(speaker.encode("utf-8")) % groups


def read_kaldi_list(path):
    """The ``key value`` lines of a Kaldi-style list (``wav.scp``, ``utt2spk``,
    ``text``).

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> _ = (tmp / "utt2spk").write_text("000010011 0001\\n\\n000010035\t0001\\n")
    >>> read_kaldi_list(tmp / "utt2spk")
    {'000010011': '0001', '000010035': '0001'}
    >>> read_kaldi_list(tmp / "wav.scp")
    Traceback (most recent call last):
     ...
    FileNotFoundError: ...wav.scp: missing (a speechocean762 folder has train/ and
    test/ lists)
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing (a speechocean762 folder has train/ and test/ lists)"
        )
    entries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        if len(fields) != 2:
            raise ValueError(
                f"{path}, line {number}: expected 'key value', got {line!r}"
            )
        entries[fields[0]] = fields[1].strip()
    return entries


def speechocean_split(folder, valid_utterances=2, valid_group=0, groups=5):
    """speechocean762's utterances by role: training, validation, untouched test.

    Arguments
    ---------
    folder : str or pathlib.Path
        The corpus as it ships: ``WAVE/SPEAKER*/*.WAV`` and the Kaldi-style
        ``train/`` and ``test/`` folders (``wav.scp``, ``utt2spk``).
    valid_utterances : int
        Utterances (the first by id) taken from each validation speaker.
    valid_group, groups : int
        Test speakers with ``speaker_group(speaker, groups) == valid_group``
        validate.

    Returns
    -------
    dict
        ``train``, ``valid`` (lists of paths) and ``test_speakers`` (the
        test speakers left untouched).

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> for split, speaker in [("train", "0001"), ("test", "0003")]:
    ...     (tmp / split).mkdir()
    ...     _ = (tmp / split / "wav.scp").write_text(
    ...         f"{speaker}0011 WAVE/SPEAKER{speaker}/{speaker}0011.WAV\\n")
    ...     _ = (tmp / split / "utt2spk").write_text(f"{speaker}0011 {speaker}\\n")
    >>> speechocean_split(tmp)
    Traceback (most recent call last):
     ...
    FileNotFoundError: ...SPEAKER0001/00010011.WAV: listed in ...wav.scp but missing
    """
    folder = pathlib.Path(folder)
    roles = {"train": [], "valid": [], "test_speakers": []}
    for split in ["train", "test"]:
        wavs = read_kaldi_list(folder / split / "wav.scp")
        speakers = read_kaldi_list(folder / split / "utt2spk")
        by_speaker = {}
        for utterance, relative in sorted(wavs.items()):
            path = folder / relative
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: listed in {folder / split / 'wav.scp'} but missing"
                )
            if utterance not in speakers:
                raise ValueError(
                    f"{folder / split / 'utt2spk'}: no speaker for {utterance}"
                )
            by_speaker.setdefault(speakers[utterance], []).append(path)
        for speaker, paths in sorted(by_speaker.items()):
            if split == "train":
                roles["train"] += paths
            elif speaker_group(speaker, groups) == valid_group:
                roles["valid"] += paths[:valid_utterances]
            else:
                roles["test_speakers"].append(speaker)
    return roles


def split_files(data_folder, speechocean_folder=None, speechocean_valid_utterances=2):
    """The fixed split of ``data_folder`` (and speechocean762) into roles (lists of
    paths).

    Example
    -------
    >>> split = split_files("no/such/folder")
    >>> sorted(split)  # doctest: +NORMALIZE_WHITESPACE
    ['real', 'rir', 'test_dns', 'test_noise', 'test_speech', 'test_voicebank',
     'train_noise', 'train_speech', 'valid_noise', 'valid_pairs', 'valid_speech',
     'valid_utterances']
    """
    data = pathlib.Path(data_folder)
    split = {
        key: []
        for key in [
            "train_speech",
            "valid_speech",
            "valid_utterances",
            "test_speech",
            "valid_pairs",
            "train_noise",
            "valid_noise",
            "test_noise",
            "rir",
            "test_voicebank",
            "test_dns",
            "real",
        ]
    }
    for path in audio_files(data / "librispeech_train_clean_100"):
        group = speaker_group(path.stem.split("-")[0])
        role = {0: "valid_speech", 1: "test_speech"}.get(group, "train_speech")
        split[role].append(path)
    split["train_speech"] += audio_files(data / "vctk_extra") + audio_files(
        data / "vctk_p234"
    )
    split["valid_pairs"] = audio_files(data / "voicebank_demand" / "clean")
    for type_folder in sorted(
        p for p in (data / "noise_extra").glob("*") if p.is_dir()
    ):
        for index, path in enumerate(audio_files(type_folder)):
            role = {2: "valid_noise", 5: "test_noise"}.get(index % 7, "train_noise")
            split[role].append(path)
    for folder in ["noise", "noise_ch"]:
        for path in audio_files(data / folder):
            if f"{folder}/{path.stem}" not in ASR_NOISES:
                split["train_noise"].append(path)
    split["rir"] = audio_files(data / "rir")
    split["test_voicebank"] = audio_files(data / "voicebank_demand_test" / "clean")
    split["test_dns"] = audio_files(data / "dns_synthetic" / "clean")
    split["real"] = audio_files(data / "real_noisy") + audio_files(
        data / "dns_synthetic" / "noisy_no_reference"
    )
    if speechocean_folder:
        speechocean = speechocean_split(
            speechocean_folder, speechocean_valid_utterances
        )
        split["train_speech"] += speechocean["train"]
        split["valid_utterances"] = speechocean["valid"]
    return split


def _twin(clean_path):
    """The noisy file beside ``.../clean/<name>`` (any audio extension)."""
    folder = clean_path.parent.parent / "noisy"
    for candidate in sorted(folder.glob(clean_path.stem + ".*")):
        if candidate.suffix.lower() in AUDIO:
            return candidate
    raise FileNotFoundError(f"{clean_path}: no noisy twin in {folder}")


def _root(path, data_folder):
    """``{data_root}/...`` for a file of ``data_folder``, else its absolute path."""
    path = pathlib.Path(path).resolve()
    if path.is_relative_to(data_folder):
        return "{data_root}/" + str(path.relative_to(data_folder))
    return str(path)


def _pairs(clean_files, data_folder):
    entries = {}
    for clean in clean_files:
        noisy = _twin(clean)
        clean_info, noisy_info = audio_info(clean), audio_info(noisy)
        if (
            clean_info.frames * noisy_info.samplerate
            != noisy_info.frames * clean_info.samplerate
        ):
            raise ValueError(
                f"{noisy}: {noisy_info.frames} samples but its clean twin {clean} "
                f"has {clean_info.frames}"
            )
        entries[clean.stem] = {
            "noisy_wav": _root(noisy, data_folder),
            "clean_wav": _root(clean, data_folder),
            "length": clean_info.frames / clean_info.samplerate,
        }
    return entries


def _write_json(path, content):
    with atomic_output(path) as partial:
        partial.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")


def prepare_realmix(
    data_folder,
    save_folder,
    segment_seconds=5.0,
    segments_per_file=2,
    snrs=(-2.5, 2.5, 7.5, 12.5, 17.5),
    level_db=-25.0,
    seed=0,
    sample_rate=16000,
    skip_prep=False,
    speechocean_folder=None,
    speechocean_valid_utterances=2,
):
    """Writes the RealMix manifests, noise CSVs and fixed mixtures.

    Arguments
    ---------
    data_folder : str or pathlib.Path
        The real-audio folder (layout of ``../shared/data``).
    save_folder : str or pathlib.Path
        Where everything is written.
    segment_seconds : float
        Length of each validation/test mixture.
    segments_per_file : int
        Consecutive segments taken from each held-out speech file.
    snrs : list of float
        SNRs (dB) of the fixed mixtures, used in turn.
    level_db : float
        RMS level of the fixed mixtures (dBFS).
    seed : int
        Seed of the noise offsets of the fixed mixtures.
    sample_rate : int
        Rate of the recipe.
    skip_prep : bool
        Do nothing.
    speechocean_folder : str or pathlib.Path, optional
        A copy of speechocean762 as it ships (see :func:`speechocean_split`):
        its training speakers train, some of its test speakers validate.
    speechocean_valid_utterances : int
        Utterances of each speechocean762 validation speaker.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> prepare_realmix("no/such/folder", tmp)
    Traceback (most recent call last):
     ...
    FileNotFoundError: folder: no training speech (librispeech_train_clean_100,
    vctk_extra, vctk_p234)
    """
    if skip_prep:
        return
    data_folder = pathlib.Path(data_folder).resolve()
    save_folder = pathlib.Path(save_folder)
    if speechocean_folder:
        speechocean_folder = pathlib.Path(speechocean_folder).resolve()
    split = split_files(data_folder, speechocean_folder, speechocean_valid_utterances)
    if not split["train_speech"]:
        raise FileNotFoundError(
            f"{data_folder.name}: no training speech "
            "(librispeech_train_clean_100, vctk_extra, vctk_p234)"
        )
    if not split["train_noise"]:
        raise FileNotFoundError(
            f"{data_folder}: no training noise (noise_extra, noise, noise_ch)"
        )
    options = {
        "data_folder": str(data_folder),
        "segment_seconds": segment_seconds,
        "segments_per_file": segments_per_file,
        "snrs": list(snrs),
        "level_db": level_db,
        "seed": seed,
        "sample_rate": sample_rate,
        "speechocean_folder": str(speechocean_folder) if speechocean_folder else None,
        "train_corpus_field": True,  # manifests written before it lack "corpus"
        "split": {k: [str(p) for p in v] for k, v in split.items()},
    }
    options_path = save_folder / OPTIONS_FILE
    if options_path.is_file() and json.loads(options_path.read_text()) == options:
        logger.info("RealMix manifests exist in %s, skipping preparation", save_folder)
        return

    train = {}
    for path in split["train_speech"]:
        info = audio_info(path)
        from_speechocean = bool(speechocean_folder) and path.is_relative_to(
            speechocean_folder
        )
        train[f"{path.parent.name}_{path.stem}"] = {
            "clean_wav": _root(path, data_folder),
            "length": info.frames / info.samplerate,
            # the recipe's train_corpus_shares draws the crops by corpus
            "corpus": "speechocean762" if from_speechocean else "collection",
        }
    _write_json(save_folder / "train.json", train)
    write_augment_csv(
        split["train_noise"],
        save_folder / "noise_train.csv",
        save_folder / "noise_cache",
        sample_rate,
    )
    write_augment_csv(
        split["rir"], save_folder / "rir.csv", save_folder / "rir_cache", sample_rate
    )

    def segments(files):
        return [
            (path, k * segment_seconds)
            for path in files
            for k in range(segments_per_file)
        ]

    valid = {}
    if split["valid_speech"] and split["valid_noise"]:
        valid = write_fixed_mixtures(
            segments(split["valid_speech"]),
            split["valid_noise"],
            snrs,
            save_folder / "valid_mixtures",
            sample_rate,
            segment_seconds,
            level_db,
            seed,
        )
    if split["valid_utterances"] and split["valid_noise"]:
        valid.update(
            write_fixed_mixtures(
                split["valid_utterances"],
                split["valid_noise"],
                snrs,
                save_folder / "valid_mixtures",
                sample_rate,
                segment_seconds,
                level_db,
                seed + 2,
            )
        )
    valid.update(_pairs(split["valid_pairs"], data_folder))
    _write_json(save_folder / "valid.json", valid)
    synthetic = {}
    if split["test_speech"] and split["test_noise"]:
        synthetic = write_fixed_mixtures(
            segments(split["test_speech"]),
            split["test_noise"],
            snrs,
            save_folder / "test_mixtures",
            sample_rate,
            segment_seconds,
            level_db,
            seed + 1,
        )
    _write_json(save_folder / "test_synthetic.json", synthetic)
    _write_json(
        save_folder / "test_voicebank.json",
        _pairs(split["test_voicebank"], data_folder),
    )
    _write_json(save_folder / "test_dns.json", _pairs(split["test_dns"], data_folder))
    real = {}
    for path in split["real"]:
        info = audio_info(path)
        real[path.stem] = {
            "noisy_wav": _root(path, data_folder),
            "length": info.frames / info.samplerate,
        }
    _write_json(save_folder / "real.json", real)
    _write_json(
        save_folder / "split.json",
        {
            k: [_root(p, data_folder).replace("{data_root}/", "") for p in v]
            for k, v in split.items()
        },
    )
    _write_json(options_path, options)
    logger.info(
        "RealMix: %d training files, %d training noises, %d validation and %d "
        "synthetic test mixtures",
        len(train),
        len(split["train_noise"]),
        len(valid),
        len(synthetic),
    )
