"""speechocean762 (OpenSLR 101) for ASR: transcripts and a noisy test set.

speechocean762 is 5,000 English sentences read by 250 non-native speakers
(Mandarin first language, children among them), 16 kHz, split by its
authors into 125 training and 125 test speakers, with Kaldi-style lists
(``train/`` and ``test/``: ``wav.scp``, ``utt2spk``, ``text``). Apache-2.0.

The enhancement recipe (``recipes/RealMix``) trains on the training
speakers and validates on the test speakers of hash group 0 of 5
(:func:`realmix_prepare.speechocean_split`). The ASR test set is made of
the other test speakers only, so no enhancer here has heard them:

* ``utterances_per_speaker`` utterances of each of those speakers (the
  first by id; 99 speakers, so 1,089 utterances by default);
* mixed with real noise that no model of the project trains on: the noise
  files of the RealMix test split and the recordings the small ASR
  benchmark mixes in (``realmix_prepare.ASR_NOISES``); utterance ``i``
  gets noise file ``i % len(noises)`` from a seeded offset, the same noise
  segment at every SNR, so the conditions differ in the SNR only;
* at each of ``snrs`` (0, 5 and 10 dB), by the mixing rule of training
  (:func:`cmse_speechbrain.mixing.mix_at_snr`, -25 dBFS), and clean (the
  corpus file as it is);
* written once: ``noisy_<snr>dB/<id>.flac`` (16-bit), and the manifest
  ``asr_test.json``: ``<id>_<condition>`` -> ``wav``, ``clean_wav``,
  ``words`` (the transcript), ``condition``, ``snr``, ``noise``,
  ``speaker``; ``asr_test_options.json`` records what made them, and a
  second call with the same options does nothing.

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import pathlib
import sys

import torch

from cmse_speechbrain.dataio import (
    atomic_output,
    audio_info,
    read_audio_checked,
    write_audio_atomic,
)
from cmse_speechbrain.mixing import mix_at_snr, write_augment_csv
from cmse_speechbrain.recognizers import normalize_text

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "RealMix"))
from realmix_prepare import ASR_NOISES, read_kaldi_list, speechocean_split, split_files  # noqa: E402

MANIFEST = "asr_test.json"
OPTIONS_FILE = "asr_test_options.json"


def transcripts(folder, split):
    """``{utterance id: transcript}`` of a speechocean762 split (``train``
    or ``test``), from its ``text`` list, upper case as it ships.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> (tmp / "test").mkdir()
    >>> _ = (tmp / "test" / "text").write_text(
    ...     "000030012\\tMARK IS GOING TO SEE ELEPHANT\\n"
    ... )
    >>> transcripts(tmp, "test")
    {'000030012': 'MARK IS GOING TO SEE ELEPHANT'}
    """
    return read_kaldi_list(pathlib.Path(folder) / split / "text")


def asr_test_utterances(speechocean_folder, utterances_per_speaker=11):
    """The utterances of the ASR test set: ``(id, path, transcript, speaker)``
    of the test speakers that RealMix leaves untouched, sorted by id.

    Arguments
    ---------
    speechocean_folder : str or pathlib.Path
        The corpus as it ships.
    utterances_per_speaker : int
        The first utterances (by id) of each such speaker.

    Returns
    -------
    list of tuple
    """
    folder = pathlib.Path(speechocean_folder)
    untouched = set(speechocean_split(folder)["test_speakers"])
    wavs = read_kaldi_list(folder / "test" / "wav.scp")
    speakers = read_kaldi_list(folder / "test" / "utt2spk")
    texts = transcripts(folder, "test")
    chosen, taken = [], {}
    for utterance in sorted(wavs):
        speaker = speakers[utterance]
        if speaker not in untouched or taken.get(speaker, 0) >= utterances_per_speaker:
            continue
        if utterance not in texts:
            raise ValueError(
                f"{folder / 'test' / 'text'}: no transcript for {utterance}"
            )
        taken[speaker] = taken.get(speaker, 0) + 1
        chosen.append((utterance, folder / wavs[utterance], texts[utterance], speaker))
    return chosen


def held_out_noises(data_folder):
    """Real noise files that no model of the project trains on: the RealMix
    test split's and the small ASR benchmark's."""
    data = pathlib.Path(data_folder)
    noises = list(split_files(data)["test_noise"])
    for name in ASR_NOISES:
        noises += sorted(p for p in data.glob(name + ".*") if p.is_file())
    if not noises:
        raise FileNotFoundError(
            f"{data}: no held-out noise (noise_extra, noise, noise_ch)"
        )
    return noises


def prepare_asr_test_set(
    speechocean_folder,
    data_folder,
    save_folder,
    snrs=(0.0, 5.0, 10.0),
    utterances_per_speaker=11,
    level_db=-25.0,
    seed=0,
    sample_rate=16000,
):
    """Writes the noisy ASR test set once (see the module's docstring).

    Arguments
    ---------
    speechocean_folder : str or pathlib.Path
        speechocean762 as it ships.
    data_folder : str or pathlib.Path
        The real-audio folder (``../shared/data``): the noise.
    save_folder : str or pathlib.Path
        Receives the mixtures and ``asr_test.json``.
    snrs : sequence of float
        SNRs of the noisy conditions (dB).
    utterances_per_speaker : int
        Utterances of each untouched test speaker.
    level_db : float
        RMS level of the mixtures (dBFS; lowered where they would clip).
    seed : int
        Seed of the noise offsets.
    sample_rate : int
        Rate of the written files.

    Returns
    -------
    dict
        The manifest.

    Example
    -------
    >>> prepare_asr_test_set("no/such/corpus", "no/such/data", getfixture("tmp_path"))
    Traceback (most recent call last):
     ...
    FileNotFoundError: no/such/corpus/train/wav.scp: missing (a speechocean762
    folder has train/ and test/ lists)
    """
    speechocean_folder = pathlib.Path(speechocean_folder)
    save_folder = pathlib.Path(save_folder)
    utterances = asr_test_utterances(speechocean_folder, utterances_per_speaker)
    noise_files = held_out_noises(data_folder)
    options = {
        "speechocean_folder": str(speechocean_folder.resolve()),
        "noise": [str(p.resolve()) for p in noise_files],
        "snrs": [float(s) for s in snrs],
        "utterances": [u[0] for u in utterances],
        "level_db": level_db,
        "seed": seed,
        "sample_rate": sample_rate,
    }
    options_path = save_folder / OPTIONS_FILE
    manifest_path = save_folder / MANIFEST
    if options_path.is_file() and manifest_path.is_file():
        if json.loads(options_path.read_text(encoding="utf-8")) == options:
            return json.loads(manifest_path.read_text(encoding="utf-8"))
    noises = [read_audio_checked(path, sample_rate) for path in noise_files]
    generator = torch.Generator().manual_seed(seed)
    manifest = {}
    for index, (utterance, path, words, speaker) in enumerate(utterances):
        clean = read_audio_checked(path, sample_rate)
        noise = noises[index % len(noises)]
        noise = noise.repeat(clean.numel() // noise.numel() + 2)
        start = int(
            torch.randint(
                0, noise.numel() - clean.numel() + 1, (1,), generator=generator
            )
        )
        segment = noise[None, start : start + clean.numel()]
        common = {
            "clean_wav": str(path.resolve()),
            "words": words,
            "speaker": speaker,
            "noise": noise_files[index % len(noises)].name,
        }
        manifest[f"{utterance}_clean"] = {
            "wav": str(path.resolve()),
            "condition": "clean",
            "snr": None,
            **common,
        }
        for snr in snrs:
            noisy, _ = mix_at_snr(
                clean[None],
                segment,
                torch.tensor([float(snr)]),
                torch.tensor([level_db]),
            )
            condition = f"{snr:g}dB"
            out = save_folder / f"noisy_{condition}" / f"{utterance}.flac"
            write_audio_atomic(out, noisy[0], sample_rate, subtype="PCM_16")
            manifest[f"{utterance}_{condition}"] = {
                "wav": str(out.resolve()),
                "condition": condition,
                "snr": float(snr),
                **common,
            }
        if (index + 1) % 100 == 0:
            print(f"{index + 1} of {len(utterances)} utterances mixed", flush=True)
    with atomic_output(manifest_path) as partial:
        partial.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    with atomic_output(options_path) as partial:
        partial.write_text(json.dumps(options, indent=1) + "\n", encoding="utf-8")
    return manifest


def _asr_entry(path, words, speaker):
    info = audio_info(path)
    return {
        "wav": str(pathlib.Path(path).resolve()),
        "length": info.frames / info.samplerate,
        "words": normalize_text(words),
        "spk_id": speaker,
    }


def _write_json(path, content):
    with atomic_output(path) as partial:
        partial.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")


def prepare_speechocean_asr(
    speechocean_folder,
    save_folder,
    test_conditions=("clean",),
    asr_test_folder=None,
    noise_folder=None,
    valid_utterances=4,
    test_utterances_per_speaker=11,
    sample_rate=16000,
    skip_prep=False,
):
    """Manifests of the speechocean762 ASR recipe.

    * ``train.json``: every utterance of the training speakers (2,500);
    * ``valid.json``: the first ``valid_utterances`` of each test speaker
      that validates the enhancer (RealMix's hash group; about 25 speakers);
    * ``test_<condition>.json`` for each of ``test_conditions``: ``clean``
      is the untouched test speakers' utterances as they are (those of
      :func:`asr_test_utterances`); a noisy condition (``0dB`` ...) comes
      from ``asr_test_folder``, the set of :func:`prepare_asr_test_set`;
    * ``noise_train.csv`` (with ``noise_folder``, the real-audio folder):
      the RealMix training noise, for multi-condition training
      (SpeechBrain's ``AddNoise``); no noise file of a test set is in it.

    Entries: ``wav``, ``length`` (s), ``words`` (normalised), ``spk_id``.

    Arguments
    ---------
    speechocean_folder : str or pathlib.Path
        speechocean762 as it ships.
    save_folder : str or pathlib.Path
        Where the manifests go.
    test_conditions : sequence of str
        The test sets.
    asr_test_folder : str or pathlib.Path, optional
        The noisy test set (needed for a condition other than ``clean``).
    noise_folder : str or pathlib.Path, optional
        The real-audio folder whose training noise is listed.
    valid_utterances : int
        Utterances of each validation speaker.
    test_utterances_per_speaker : int
        Utterances of each untouched test speaker (the clean test set).
    sample_rate : int
        Rate of the noise list.
    skip_prep : bool
        Do nothing.

    Example
    -------
    >>> prepare_speechocean_asr(
    ...     "corpus", getfixture("tmp_path"), test_conditions=["0dB"]
    ... )
    Traceback (most recent call last):
     ...
    ValueError: test condition 0dB needs asr_test_folder
    (recipes/SpeechOcean762/speechocean_prepare.py writes it)
    """
    if skip_prep:
        return
    noisy = [c for c in test_conditions if c != "clean"]
    if noisy and asr_test_folder is None:
        raise ValueError(
            f"test condition {noisy[0]} needs asr_test_folder "
            "(recipes/SpeechOcean762/speechocean_prepare.py writes it)"
        )
    folder = pathlib.Path(speechocean_folder)
    save_folder = pathlib.Path(save_folder)
    roles = speechocean_split(folder, valid_utterances=valid_utterances)
    for split, role in [("train", "train"), ("test", "valid")]:
        texts = transcripts(folder, split)
        speakers = read_kaldi_list(folder / split / "utt2spk")
        entries = {}
        for path in roles[role]:
            utterance = path.stem
            if utterance not in texts:
                raise ValueError(
                    f"{folder / split / 'text'}: no transcript for {utterance}"
                )
            entries[utterance] = _asr_entry(path, texts[utterance], speakers[utterance])
        _write_json(save_folder / f"{role}.json", entries)
    manifest = {}
    if noisy:
        manifest_path = pathlib.Path(asr_test_folder) / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{manifest_path}: missing (run "
                "recipes/SpeechOcean762/speechocean_prepare.py first)"
            )
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for condition in test_conditions:
        if condition == "clean":
            entries = {
                u: _asr_entry(p, w, s)
                for u, p, w, s in asr_test_utterances(
                    folder, test_utterances_per_speaker
                )
            }
        else:
            entries = {
                key.rsplit("_", 1)[0]: _asr_entry(e["wav"], e["words"], e["speaker"])
                for key, e in manifest.items()
                if e["condition"] == condition
            }
            if not entries:
                raise ValueError(
                    f"{asr_test_folder}: no utterance of condition {condition}"
                )
        _write_json(save_folder / f"test_{condition}.json", entries)
    if noise_folder is not None:
        write_augment_csv(
            split_files(noise_folder)["train_noise"],
            save_folder / "noise_train.csv",
            save_folder / "noise_cache",
            sample_rate,
        )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description=prepare_asr_test_set.__doc__.split("\n")[0]
    )
    parser.add_argument("speechocean_folder", type=pathlib.Path)
    parser.add_argument("save_folder", type=pathlib.Path)
    parser.add_argument(
        "--data",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parents[3] / "shared" / "data",
    )
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.0, 5.0, 10.0])
    parser.add_argument("--utterances-per-speaker", type=int, default=11)
    args = parser.parse_args()
    written = prepare_asr_test_set(
        args.speechocean_folder,
        args.data,
        args.save_folder,
        args.snrs,
        args.utterances_per_speaker,
    )
    print(f"{len(written)} entries in {args.save_folder / MANIFEST}")
