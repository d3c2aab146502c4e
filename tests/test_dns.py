"""The DNS recipe: preparation, on-the-fly mixing, end to end, DDP, bf16."""

import csv
import json
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from cmse_speechbrain.dataio import AudioFileError, read_audio_checked
from cmse_speechbrain.mixing import OnTheFlyMixer, write_augment_csv

from conftest import MINI_DNS, ROOT, recipe_command, run_recipe, sha256

sys.path.insert(0, str(ROOT / "recipes" / "DNS"))
from dns_prepare import prepare_dns  # noqa: E402

CLEAN = sorted((MINI_DNS / "clean").glob("*.flac"))
NOISE = sorted((MINI_DNS / "noise").glob("*.flac"))
RIRS = sorted((MINI_DNS / "impulse_responses").rglob("*.flac"))
SYNTHETIC = MINI_DNS / "test_set" / "synthetic" / "no_reverb"


def _crop(source, target, seconds, rate=16000, channels=1):
    audio = read_audio_checked(source, 16000)[: int(seconds * 16000)].numpy()
    if rate != 16000:
        audio = torch.nn.functional.interpolate(
            torch.from_numpy(audio)[None, None], scale_factor=rate / 16000
        )[0, 0].numpy()
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(
        target, audio if channels == 1 else audio[:, None].repeat(channels, 1), rate
    )


@pytest.fixture
def mini_layout(tmp_path):
    """A miniature DNS-Challenge tree of real audio, with both test subsets."""
    root = tmp_path / "datasets"
    for i, source in enumerate(CLEAN[:6]):  # two sub-folders, one file at 48 kHz
        rate = 48000 if i == 0 else 16000
        _crop(source, root / "clean" / f"part{i % 2}" / f"{source.stem}.wav", 1.5, rate)
    _crop(NOISE[0], root / "noise" / "a.wav", 2.0)
    _crop(NOISE[1], root / "noise" / "b.wav", 2.0, rate=48000, channels=2)
    _crop(RIRS[0], root / "impulse_responses" / "SLR26" / "sim" / "r1.wav", 0.5)
    _crop(RIRS[1], root / "impulse_responses" / "SLR28" / "real" / "r2.wav", 0.5)
    for subset in ["no_reverb", "with_reverb"]:
        for fileid in ["44", "58"]:
            folder = root / "test_set" / "synthetic" / subset
            _crop(
                SYNTHETIC / "clean" / f"clean_fileid_{fileid}.flac",
                folder / "clean" / f"clean_fileid_{fileid}.wav",
                1.0,
            )
            _crop(
                SYNTHETIC / "noisy" / f"noisy_fileid_{fileid}.flac",
                folder / "noisy" / f"clnsp{fileid}_x_snr5_tl-21_fileid_{fileid}.wav",
                1.0,
            )
    real = sorted((MINI_DNS / "test_set" / "real_recordings").glob("*.flac"))[0]
    _crop(real, root / "test_set" / "real_recordings" / "rec.wav", 1.0)
    return root


def _prepare(root, save, **kwargs):
    options = dict(valid_count=2, valid_seed=7, snr_low=0, snr_high=10, reverb_prob=0.5)
    prepare_dns(root, save, **dict(options, **kwargs))


def test_prepare_miniature_layout(mini_layout, tmp_path):
    inputs = {p: sha256(p) for p in mini_layout.rglob("*.wav")}
    save = tmp_path / "prep"
    _prepare(mini_layout, save)
    train = json.loads((save / "train.json").read_text())
    valid = json.loads((save / "valid.json").read_text())
    assert len(train) == 4 and len(valid) == 2 and not set(train) & set(valid)
    assert all(set(e) == {"clean_wav", "length"} for e in train.values())
    first = f"clean__part0__{CLEAN[0].stem}"
    if first in train:  # the 48 kHz file: its length in seconds from the header
        assert train[first]["length"] == pytest.approx(1.5, abs=1e-3)
    for name in ["no_reverb", "with_reverb"]:
        test = json.loads((save / f"test_{name}.json").read_text())
        assert sorted(test) == ["fileid_44", "fileid_58"]
        assert test["fileid_44"]["noisy_wav"].endswith("_fileid_44.wav")
        assert test["fileid_44"]["clean_wav"].endswith("clean_fileid_44.wav")
    assert list(json.loads((save / "real.json").read_text())) == ["rec"]
    with open(save / "rir.csv") as f:
        assert sorted(r["ID"] for r in csv.DictReader(f)) == [
            "r1",
            "r2",
        ]  # nested folders
    with open(save / "noise.csv") as f:
        noise = {r["ID"]: r["wav"] for r in csv.DictReader(f)}
    assert sf.info(noise["b"]).samplerate == 16000 and sf.info(noise["b"]).channels == 1
    for entry in valid.values():  # fixed mixtures: noisy differs from its target
        noisy, clean = sf.read(entry["noisy_wav"])[0], sf.read(entry["clean_wav"])[0]
        assert noisy.shape == clean.shape and abs(noisy - clean).max() > 1e-3
    # deterministic: a second preparation elsewhere writes the same mixtures
    again = tmp_path / "again"
    _prepare(mini_layout, again)
    for utt_id, entry in json.loads((again / "valid.json").read_text()).items():
        for key in ["noisy_wav", "clean_wav"]:  # float WAV headers carry a time stamp
            assert (sf.read(entry[key])[0] == sf.read(valid[utt_id][key])[0]).all()
    # skipped when the manifests exist for the same options
    stamp = (save / "train.json").stat().st_mtime_ns
    _prepare(mini_layout, save)
    assert (save / "train.json").stat().st_mtime_ns == stamp
    assert inputs == {p: sha256(p) for p in mini_layout.rglob("*.wav")}


def test_prepare_errors_name_the_file(mini_layout, tmp_path):
    orphan = mini_layout / "test_set/synthetic/with_reverb/noisy/clnsp9_x_fileid_9.wav"
    _crop(CLEAN[0], orphan, 1.0)
    with pytest.raises(FileNotFoundError, match="clnsp9_x_fileid_9.wav: no clean twin"):
        _prepare(mini_layout, tmp_path / "a")
    orphan.unlink()
    short = mini_layout / "test_set/synthetic/no_reverb/clean/clean_fileid_44.wav"
    _crop(CLEAN[0], short, 0.5)
    with pytest.raises(
        AudioFileError,
        match=r"fileid_44\.wav: 16000 samples .* clean twin .*clean_fileid_44",
    ):
        _prepare(mini_layout, tmp_path / "b")
    bad = mini_layout / "clean" / "part1" / "broken.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(AudioFileError, match="broken.wav: not a readable audio file"):
        _prepare(mini_layout, tmp_path / "c", valid_count=1)
    for path in (mini_layout / "noise").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match="noise: no audio files"):
        _prepare(mini_layout, tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="missing DNS clean speech folder"):
        _prepare(mini_layout, tmp_path / "e", clean_folders=["clean_fullband"])


@pytest.fixture(scope="module")
def augment_csvs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("augment")
    write_augment_csv(NOISE, folder / "noise.csv", folder / "cache")
    write_augment_csv(RIRS, folder / "rir.csv", folder / "cache")
    return folder / "noise.csv", folder / "rir.csv"


def _batch(count=6):
    """Real clean speech of different lengths, zero-padded."""
    signals = [
        read_audio_checked(p, 16000)[: 16000 + 4000 * i]
        for i, p in enumerate(CLEAN[:count])
    ]
    batch = torch.zeros(len(signals), max(len(s) for s in signals))
    for i, s in enumerate(signals):
        batch[i, : len(s)] = s
    return batch, torch.tensor([len(s) / batch.shape[1] for s in signals])


def _mixer(
    noise_csv,
    rir_csv=None,
    snr=(5, 5),
    reverb_prob=0.0,
    reverb_target="reverberant",
    **options,
):
    return OnTheFlyMixer(
        noise_csv,
        snr_low=snr[0],
        snr_high=snr[1],
        rir_csv=rir_csv,
        reverb_prob=reverb_prob,
        reverb_target=reverb_target,
        **options,
    )


def _measured_snr(noisy, target, lengths):
    snrs = []
    for n, t, length in zip(noisy, target, (lengths * noisy.shape[1]).round().long()):
        n, t = n[:length], t[:length]
        snrs.append(float(10 * torch.log10(t.pow(2).sum() / (n - t).pow(2).sum())))
    return snrs


@pytest.mark.parametrize("reverb_prob", [0.0, 1.0])
def test_mixing_at_requested_snr(augment_csvs, reverb_prob):
    noise_csv, rir_csv = augment_csvs
    clean, lengths = _batch()
    torch.manual_seed(0)
    mixer = _mixer(noise_csv, rir_csv, snr=(5, 5), reverb_prob=reverb_prob)
    noisy, target = mixer(clean, lengths)
    assert all(abs(snr - 5) < 0.5 for snr in _measured_snr(noisy, target, lengths))
    assert noisy.abs().max() <= 0.99 + 1e-6
    padding = lengths[0] * clean.shape[1]
    assert noisy[0, int(padding) :].abs().max() == 0  # padding stays silent
    # a range: every utterance within it, and not all at the same SNR
    snrs = _measured_snr(*_mixer(noise_csv, snr=(0, 15))(clean, lengths), lengths)
    assert all(-0.5 < snr < 15.5 for snr in snrs) and max(snrs) - min(snrs) > 2
    # with the noise augmentations (second noise, babble of the other
    # utterances, tilt) the SNR is still the drawn one
    augmented = _mixer(
        noise_csv, snr=(5, 5), second_noise_prob=1.0, babble_prob=1.0, tilt_prob=1.0
    )(clean, lengths)
    assert all(abs(snr - 5) < 0.5 for snr in _measured_snr(*augmented, lengths))


def test_mixing_levels_and_early_reverb_target(augment_csvs):
    noise_csv, rir_csv = augment_csvs
    clean, lengths = _batch()
    torch.manual_seed(1)
    noisy, target = _mixer(noise_csv, snr=(10, 10), level_low=-40, level_high=-20)(
        clean, lengths
    )
    for n, length in zip(noisy, (lengths * clean.shape[1]).round().long()):
        level = 10 * torch.log10(n[:length].pow(2).mean())
        assert -40.5 < level < -19.5
    # early-reflection target: the reverberant mixture is farther from it
    # than the dry-target mixture at the same SNR (late reverb is removed too)
    torch.manual_seed(2)
    noisy, target = _mixer(
        noise_csv, rir_csv, snr=(20, 20), reverb_prob=1.0, reverb_target="early"
    )(clean, lengths)
    assert max(_measured_snr(noisy, target, lengths)) < 19.5


def test_mixing_is_deterministic_given_a_seed(augment_csvs):
    noise_csv, rir_csv = augment_csvs
    clean, lengths = _batch(4)

    def mix(seed):
        torch.manual_seed(seed)
        return _mixer(noise_csv, rir_csv, snr=(0, 20), reverb_prob=0.5)(clean, lengths)

    first, same, other = mix(3), mix(3), mix(4)
    assert torch.equal(first[0], same[0]) and torch.equal(first[1], same[1])
    assert not torch.allclose(first[0], other[0])


DEBUG = ["--debug", "--debug_persistently", "--train_segment_seconds=2.0"]


def test_dns_recipe_debug_end_to_end(tmp_path):
    out = tmp_path / "dns"
    inputs = {p: sha256(p) for p in MINI_DNS.rglob("*.flac")}
    run_recipe(out, *DEBUG, recipe="dns")
    for name in [
        "train.json",
        "valid.json",
        "noise.csv",
        "rir.csv",
        "real.json",
        "test_no_reverb.json",
        "train_log.txt",
        "training_curves.png",
    ]:
        assert (out / name).exists(), name
    assert not (out / "test_results_with_reverb.csv").exists()  # no such subset shipped
    train = json.loads((out / "train.json").read_text())
    assert not set(train) & set(json.loads((out / "valid.json").read_text()))
    with open(out / "test_results_no_reverb.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2  # --debug: 2 batches of 1
    for row in rows:
        assert 1.0 <= float(row["noisy_pesq"]) <= 4.7
        assert 0.0 < float(row["enhanced_stoi"]) <= 1.0
        wav = out / "enhanced_wavs" / "no_reverb" / f"{row['id']}.wav"
        assert sf.info(wav).frames == 160000
    with open(out / "dnsmos_real.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    real = json.loads((out / "real.json").read_text())
    for row in rows:
        for key in [
            "noisy_sig",
            "noisy_bak",
            "noisy_ovrl",
            "enhanced_sig",
            "enhanced_ovrl",
        ]:
            assert 1.0 <= float(row[key]) <= 5.0
        noisy = real[row["id"]]["noisy_wav"].replace("{data_root}", str(MINI_DNS))
        enhanced = out / "enhanced_wavs" / "real" / f"{row['id']}.wav"
        assert sf.info(enhanced).frames == sf.info(noisy).frames
    summary = json.loads((out / "dnsmos_real_summary.json").read_text())
    assert summary["recordings"] == 2 and set(summary["enhanced"]) == {
        "sig",
        "bak",
        "ovrl",
    }
    assert inputs == {p: sha256(p) for p in MINI_DNS.rglob("*.flac")}


def test_dns_recipe_under_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    command = recipe_command(
        out, *DEBUG, "--debug_epochs=1", "--distributed_backend=gloo", recipe="dns"
    )
    command = [
        command[0],
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
    ] + command[1:]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert (
        json.loads((out / "test_summary_no_reverb.json").read_text())["utterances"] == 2
    )
    assert json.loads((out / "dnsmos_real_summary.json").read_text())["recordings"] == 2
    assert len(list((out / "save").glob("CKPT+*"))) == 1
