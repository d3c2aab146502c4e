"""RealMix reads speechocean762 as it ships: training speakers train, a fixed
group of test speakers validates, the other test speakers are never read."""

import json
import shutil
import sys

import pytest
import soundfile as sf
from speechbrain.dataio.sampler import ReproducibleWeightedRandomSampler

from cmse_speechbrain.recipe import corpus_sampling_weights

from conftest import ROOT

sys.path.insert(0, str(ROOT / "recipes" / "RealMix"))
from realmix_prepare import prepare_realmix, speechocean_split, split_files  # noqa: E402

REAL_SPEECH = sorted(
    (ROOT / "recipes/VoiceBank/mini_voicebank/clean_trainset_28spk_wav").glob("*.flac")
)
SHARED = ROOT.parent / "shared" / "data"
TRAIN_SPEAKERS = ["0001", "0002"]
TEST_SPEAKERS = [
    "0006",
    "0010",
    "0003",
    "0004",
]  # 0006 and 0010: validation group (crc32 % 5 == 0)


def fake_corpus(folder, per_speaker=3):
    """A speechocean762-shaped folder of real speech: WAVE/SPEAKER*/, train/, test/."""
    files = iter(REAL_SPEECH * 4)
    for split, speakers in [("train", TRAIN_SPEAKERS), ("test", TEST_SPEAKERS)]:
        (folder / split).mkdir(parents=True)
        scp, utt2spk = [], []
        for speaker in speakers:
            (folder / "WAVE" / f"SPEAKER{speaker}").mkdir(parents=True)
            for index in range(per_speaker):
                utterance = f"0{speaker}{index:04d}"
                audio, rate = sf.read(next(files))
                sf.write(
                    folder / "WAVE" / f"SPEAKER{speaker}" / f"{utterance}.WAV",
                    audio,
                    rate,
                )
                scp.append(f"{utterance}\tWAVE/SPEAKER{speaker}/{utterance}.WAV")
                utt2spk.append(f"{utterance} {speaker}")
        (folder / split / "wav.scp").write_text("\n".join(scp) + "\n")
        (folder / split / "utt2spk").write_text("\n".join(utt2spk) + "\n")
    return folder


def speaker_of(path):
    return path.parent.name.replace("SPEAKER", "")


def test_speechocean_roles(tmp_path):
    corpus = fake_corpus(tmp_path / "speechocean762")
    roles = speechocean_split(corpus, valid_utterances=2)
    assert {speaker_of(p) for p in roles["train"]} == set(TRAIN_SPEAKERS)
    assert len(roles["train"]) == 6
    assert {speaker_of(p) for p in roles["valid"]} == {"0006", "0010"}
    assert len(roles["valid"]) == 4  # the first two of each validation speaker
    assert sorted(roles["test_speakers"]) == ["0003", "0004"]


def test_speechocean_missing_file_is_named(tmp_path):
    corpus = fake_corpus(tmp_path / "speechocean762")
    missing = corpus / "WAVE" / "SPEAKER0003" / "000030001.WAV"
    missing.unlink()
    with pytest.raises(
        FileNotFoundError, match="000030001.WAV: listed in .*test/wav.scp"
    ):
        speechocean_split(corpus)
    (corpus / "test" / "utt2spk").unlink()
    with pytest.raises(FileNotFoundError, match="utt2spk: missing"):
        speechocean_split(corpus)


def test_prepare_realmix_with_speechocean(tmp_path):
    """The manifests take speechocean762's speakers in their roles, and the
    untouched test speakers appear nowhere."""
    data = tmp_path / "data"
    for sub in ["librispeech_train_clean_100", "noise_extra/hum"]:
        (data / sub).mkdir(parents=True)
    for index, path in enumerate(REAL_SPEECH[:3]):
        shutil.copy(
            path,
            data / "librispeech_train_clean_100" / f"{9000 + index}-1-{index}.flac",
        )
    noisy = sorted(
        (ROOT / "recipes/VoiceBank/mini_voicebank/noisy_testset_wav").glob("*.flac")
    )
    for index, path in enumerate(noisy[:7]):  # 7 noise files: one validates, one tests
        shutil.copy(path, data / "noise_extra" / "hum" / f"n{index}.flac")
    corpus = fake_corpus(tmp_path / "speechocean762")
    save = tmp_path / "save"
    prepare_realmix(data, save, speechocean_folder=corpus)
    train = json.loads((save / "train.json").read_text())
    valid = json.loads((save / "valid.json").read_text())
    trained = {entry["clean_wav"] for entry in train.values()}
    assert sum("SPEAKER0001" in path for path in trained) == 3
    assert not any(f"SPEAKER{s}" in path for path in trained for s in TEST_SPEAKERS)
    # speechocean validation mixtures
    assert len([k for k in valid if k.startswith("0")]) == 4
    written = (save / "split.json").read_text() + json.dumps(valid)
    assert "SPEAKER0003" not in written and "SPEAKER0004" not in written
    options = json.loads((save / "realmix_prepare.json").read_text())
    assert options["speechocean_folder"] == str(corpus.resolve())
    # each training entry names its corpus: train_corpus_shares draws by it
    corpora = [entry["corpus"] for entry in train.values()]
    assert corpora.count("speechocean762") == 6 and corpora.count("collection") == 3
    weights = corpus_sampling_weights(corpora, {"speechocean762": 0.25})
    draws = list(ReproducibleWeightedRandomSampler(weights, 4000, True, seed=1))
    drawn = sum(corpora[i] == "speechocean762" for i in draws) / len(draws)
    assert abs(drawn - 0.25) < 0.03, drawn  # 6 of 9 files, a quarter of the crops


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not on this machine")
def test_speechocean_speakers_stay_apart_from_the_collection(tmp_path):
    corpus = fake_corpus(tmp_path / "speechocean762")
    split = split_files(SHARED, corpus)
    trained = {str(p) for p in split["train_speech"]}
    validated = {str(p) for p in split["valid_utterances"]}
    assert validated and not trained & validated
    assert all(
        "speechocean762" not in p
        for p in map(str, split["valid_speech"] + split["test_speech"])
    )


def _with_transcripts(corpus):
    for split in ["train", "test"]:
        ids = [
            line.split()[0]
            for line in (corpus / split / "wav.scp").read_text().splitlines()
        ]
        (corpus / split / "text").write_text(
            "".join(f"{u}\tTWO SIX FOUR {u[-1]}\n" for u in ids)
        )
    return corpus


def _held_out_noise_folder(folder):
    """A data folder whose only noise type has 7 real recordings (file 5 tests)."""
    (folder / "noise_extra" / "hum").mkdir(parents=True)
    noisy = sorted(
        (ROOT / "recipes/VoiceBank/mini_voicebank/noisy_testset_wav").glob("*.flac")
    )
    for index, path in enumerate(noisy[:7]):
        shutil.copy(path, folder / "noise_extra" / "hum" / f"n{index}.flac")
    return folder


def test_asr_test_set_uses_only_untouched_speakers_and_held_out_noise(tmp_path):
    sys.path.insert(0, str(ROOT / "recipes" / "SpeechOcean762"))
    from speechocean_prepare import MANIFEST, prepare_asr_test_set

    corpus = _with_transcripts(fake_corpus(tmp_path / "speechocean762"))
    data = _held_out_noise_folder(tmp_path / "data")
    save = tmp_path / "asr_test"
    manifest = prepare_asr_test_set(
        corpus, data, save, snrs=(0.0, 10.0), utterances_per_speaker=2
    )
    assert {e["speaker"] for e in manifest.values()} == {
        "0003",
        "0004",
    }  # not validation, not train
    assert len(manifest) == 2 * 2 * 3  # speakers x utterances x (clean, 0 dB, 10 dB)
    # the RealMix test noise only
    assert {e["noise"] for e in manifest.values()} == {"n5.flac"}
    first = manifest["000030000_0dB"]
    assert first["words"] == "TWO SIX FOUR 0" and first["condition"] == "0dB"
    clean, _ = sf.read(first["clean_wav"])
    noisy_0, _ = sf.read(first["wav"])
    noisy_10, _ = sf.read(manifest["000030000_10dB"]["wav"])
    import numpy as np

    def snr(noisy):  # the mixtures are rescaled: fit the clean part first
        gain = np.dot(noisy, clean) / np.dot(clean, clean)
        return 10 * np.log10(
            np.sum((gain * clean) ** 2) / np.sum((noisy - gain * clean) ** 2)
        )

    assert abs(snr(noisy_0) - 0.0) < 0.5 and abs(snr(noisy_10) - 10.0) < 0.5
    assert manifest["000030000_clean"]["wav"] == first["clean_wav"]
    # written once: a second call with the same options rewrites nothing
    stamp = (save / "noisy_0dB" / "000030000.flac").stat().st_mtime_ns
    assert (
        prepare_asr_test_set(
            corpus, data, save, snrs=(0.0, 10.0), utterances_per_speaker=2
        )
        == manifest
    )
    assert (save / "noisy_0dB" / "000030000.flac").stat().st_mtime_ns == stamp
    assert json.loads((save / MANIFEST).read_text()) == manifest
    # a missing transcript is named
    (corpus / "test" / "text").write_text("000030000\tTWO\n")
    with pytest.raises(ValueError, match="no transcript for 000030001"):
        prepare_asr_test_set(corpus, data, tmp_path / "again", utterances_per_speaker=2)


def test_asr_benchmark_scores_the_set_and_resumes(tmp_path):
    pytest.importorskip("pocketsphinx")
    sys.path.insert(0, str(ROOT / "recipes" / "SpeechOcean762"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import asr_wer
    from speechocean_prepare import prepare_asr_test_set

    corpus = _with_transcripts(fake_corpus(tmp_path / "speechocean762", per_speaker=1))
    data = _held_out_noise_folder(tmp_path / "data")
    prepare_asr_test_set(
        corpus, data, tmp_path / "set", snrs=(5.0,), utterances_per_speaker=1
    )
    out = tmp_path / "out"
    argv = [
        "--speechocean-set",
        str(tmp_path / "set"),
        "--output",
        str(out),
        "--systems",
        "noisy",
    ]
    summary = asr_wer.main(argv)
    assert [(e["condition"], e["system"], e["utterances"]) for e in summary] == [
        ("clean", "noisy", 2),
        ("5dB", "noisy", 2),
    ]
    assert all(e["wer_low"] <= e["wer"] <= e["wer_high"] for e in summary)
    log = (out / "asr_wer_speechocean_utterances.csv").read_text().splitlines()
    assert len(log) == 1 + 4
    assert asr_wer.main(argv) == summary  # a rerun decodes nothing new
    assert (
        len((out / "asr_wer_speechocean_utterances.csv").read_text().splitlines()) == 5
    )
    assert "| 5dB | noisy | 2 |" in (out / "asr_wer_speechocean.md").read_text()


def test_asr_benchmark_mixes_only_the_cmcr_models(tmp_path):
    """The mix with the noisy input is scored for the CMCR-Net model alone, and
    every system of a condition is summarised on the same utterances."""
    pytest.importorskip("pocketsphinx")
    sys.path.insert(0, str(ROOT / "recipes" / "SpeechOcean762"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import asr_wer
    from speechocean_prepare import prepare_asr_test_set

    corpus = _with_transcripts(fake_corpus(tmp_path / "speechocean762", per_speaker=1))
    data = _held_out_noise_folder(tmp_path / "data")
    prepare_asr_test_set(
        corpus, data, tmp_path / "set", snrs=(5.0,), utterances_per_speaker=1
    )
    argv = ["--speechocean-set", str(tmp_path / "set"), "--output", str(tmp_path)]
    summary = asr_wer.main(argv + ["--systems", "noisy", "cmcr-net"])
    assert [(e["condition"], e["system"]) for e in summary] == [
        (c, s)
        for c in ("clean", "5dB")
        for s in ("noisy", "cmcr-net", "cmcr-net+mix0.5")
    ]
    assert {e["utterances"] for e in summary} == {2}


def test_realmix_yaml_takes_corpus_shares_from_the_command_line(tmp_path):
    """The recipe's default is a mapping, so that an override can fill it (a null
    default makes HyperPyYAML refuse a mapping override)."""
    from hyperpyyaml import load_hyperpyyaml

    overrides = {"output_folder": str(tmp_path), "train_corpus_shares": {}}
    overrides["train_corpus_shares"]["speechocean762"] = 0.3
    with open(ROOT / "hparams" / "cmse_realmix.yaml", encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    assert hparams["train_corpus_shares"] == {"speechocean762": 0.3}
