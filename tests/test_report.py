"""Issue 18: the listening page of ``cmse-report`` (cmse_speechbrain.report),
on real VoiceBank-DEMAND recordings, and the page opened in headless Chromium."""

import csv
import glob
import html
import json
import re
import shutil
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from cmse_speechbrain import cli
from cmse_speechbrain.report import write_report

from conftest import MINI_VOICEBANK

NOISY = MINI_VOICEBANK / "noisy_testset_wav"
CLEAN = MINI_VOICEBANK / "clean_testset_wav"
# shipped name -> name in the test folders (spaces, non-ASCII, a subfolder)
NAMES = {
    "p232_001": "p232_001",
    "p232_010": "über file 2",
    "p257_001": "sub dir/Ωmega 3",
}
QUIET, LOW = "quiet é", "low pass"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """noisy/, clean/ and two systems: a quieter copy (one file corrupt) and
    a low-passed copy (one file missing)."""
    root = tmp_path_factory.mktemp("report data")
    for shipped, name in NAMES.items():
        noisy, rate = sf.read(NOISY / f"{shipped}.flac")
        for folder, audio in [
            ("noisy", noisy),
            ("clean", sf.read(CLEAN / f"{shipped}.flac")[0]),
            (QUIET, 0.5 * noisy),
            (
                LOW,
                scipy.signal.sosfilt(
                    scipy.signal.butter(6, 2500, output="sos", fs=rate), noisy
                ),
            ),
        ]:
            path = (
                root
                / folder
                / f"{name}.{'flac' if folder in ('noisy', 'clean') else 'wav'}"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, audio, rate)
    (root / QUIET / f"{NAMES['p232_010']}.wav").write_bytes(b"not audio at all")
    (root / LOW / "p232_001.wav").unlink()
    return root


@pytest.fixture(scope="module")
def report(folders):
    """The page for 3 files and 2 systems, without DNSMOS (fast)."""
    done = write_report(
        folders / "clean",
        folders / "noisy",
        {QUIET: folders / QUIET, LOW: folders / LOW},
        folders / "report",
        dnsmos=False,
        progress=False,
    )
    return done, done["page"].read_text(encoding="utf-8")


def _sources(page, tag):
    return [
        html.unescape(src) for src in re.findall(rf'<{tag}\b[^>]*\bsrc="([^"]*)"', page)
    ]


def _local(report_dir, src):
    return report_dir / urllib.parse.unquote(src)


def test_page_has_a_player_per_version_a_spectrogram_per_file_and_a_row_per_system(
    report, folders
):
    done, page = report
    assert done["files"] == 3 and done["missing"] == 2
    audio = _sources(page, "audio")
    # noisy, 2 systems, clean; one missing in each system
    assert len(audio) == 3 * 4 - 2
    assert page.count('preload="none"') == len(audio)
    images = _sources(page, "img")
    assert sorted(images) == sorted(
        ["per_file.png"]
        + [urllib.parse.quote(f"spectrograms/{name}.png") for name in NAMES.values()]
    )
    assert page.count('loading="lazy"') == 3
    for src in audio + images:
        assert _local(folders / "report", src).is_file(), src
    summary = page.split('id="summary"')[1].split("</table>")[0]
    assert summary.count("<tr>") == 1 + 3  # header, noisy, 2 systems
    assert page.count('<table class="metrics">') == 3
    assert "http://" not in page and "https://" not in page  # nothing from the network


def test_missing_and_unreadable_files_show_as_missing_with_the_reason(report, folders):
    done, page = report
    missing = re.findall(
        r'<figure class="missing"><figcaption>([^<]*)</figcaption>'
        r"missing: ([^<]*)</figure>",
        page,
    )
    assert len(missing) == 2
    reasons = dict(missing)
    assert reasons[html.escape(LOW)] == "no file with this name"
    assert reasons[html.escape(QUIET)].startswith("not a readable audio file")
    assert (
        done["summary"][LOW]["pesq"][3] == 2
        and done["summary"]["noisy"]["pesq"][3] == 3
    )


def test_names_with_spaces_and_non_ascii_characters(report, folders):
    _, page = report
    for name in NAMES.values():
        assert f"<h3>{html.escape(name)}</h3>" in page
        src = urllib.parse.quote(f"audio/noisy/{name}.wav")
        assert f'src="{src}"' in page and " " not in src
    assert f'<td data-v="{html.escape(QUIET)}">{html.escape(QUIET)}</td>' in page


def test_copies_keep_each_file_and_the_scores_are_the_files_scores(report, folders):
    done, page = report
    for name in NAMES.values():
        original, copy = (
            sf.info(folders / "noisy" / f"{name}.flac"),
            sf.info(folders / "report" / "audio" / "noisy" / f"{name}.wav"),
        )
        assert (copy.frames, copy.samplerate, copy.subtype) == (
            original.frames,
            original.samplerate,
            "PCM_16",
        )
    with open(folders / "report" / "metrics.csv", encoding="utf-8") as f:
        rows = {(r["file"], r["system"]): r for r in csv.DictReader(f)}
    name = NAMES["p232_001"]
    clean = torch.from_numpy(
        sf.read(folders / "clean" / f"{name}.flac", dtype="float32")[0]
    )
    noisy = torch.from_numpy(
        sf.read(folders / "noisy" / f"{name}.flac", dtype="float32")[0]
    )
    expected = cli.score_pair(clean, noisy)
    for metric in ("pesq", "stoi", "csig", "si_sdr"):
        assert float(rows[(name, "noisy")][metric]) == pytest.approx(
            expected[metric], abs=1e-3
        )
    low = float(rows[(NAMES["p257_001"], LOW)]["stoi"])
    # low-passing loses intelligibility
    assert low < float(rows[(NAMES["p257_001"], "noisy")]["stoi"])
    mean, low_ci, high_ci, n = done["summary"]["noisy"]["stoi"]
    values = [float(rows[(k, "noisy")]["stoi"]) for k in NAMES.values()]
    assert (
        n == 3
        and mean == pytest.approx(np.mean(values), abs=1e-4)
        and low_ci < mean < high_ci
    )
    assert rows[(NAMES["p232_010"], QUIET)]["problem"].startswith(
        "not a readable audio file"
    )


def test_residual_noise_columns_for_every_system(report, folders):
    done, page = report
    summary = page.split('id="summary"')[1].split("</table>")[0]
    assert (
        "<th>pause attenuation dB</th>" in summary
        and "<th>speech level dB</th>" in summary
    )
    with open(folders / "report" / "metrics.csv", encoding="utf-8") as f:
        rows = {(r["file"], r["system"]): r for r in csv.DictReader(f)}
    name = NAMES["p232_001"]  # a file with speech pauses
    assert float(rows[(name, "noisy")]["pause_attenuation_db"]) == 0.0
    # the quieter copy: 6 dB less noise in the pauses and 6 dB less speech
    assert float(rows[(name, QUIET)]["pause_attenuation_db"]) == pytest.approx(
        6.02, abs=0.01
    )
    assert float(rows[(name, QUIET)]["speech_level_db"]) == pytest.approx(
        float(rows[(name, "noisy")]["speech_level_db"]) - 6.02, abs=0.01
    )
    # low-passing leaves the low-frequency DEMAND noise
    low = rows[(NAMES["p232_010"], LOW)]
    assert 0.0 < float(low["pause_attenuation_db"]) < 1.0
    # p257_001 has no pause: NaN, left out of the means (and shown as "–")
    assert rows[(NAMES["p257_001"], LOW)]["pause_attenuation_db"] == "nan"
    assert done["summary"][LOW]["pause_attenuation_db"][3] == 1
    assert done["summary"][LOW]["speech_level_db"][3] == 2
    assert done["summary"]["noisy"]["pause_attenuation_db"][:2] == (0.0, 0.0)


def test_a_file_of_another_length_is_played_but_not_scored(folders, tmp_path):
    name = NAMES["p232_001"]
    audio, rate = sf.read(folders / "noisy" / f"{name}.flac")
    sf.write(tmp_path / "cut.wav", audio[: len(audio) // 2], rate)
    done = write_report(
        {"x": folders / "clean" / f"{name}.flac"},
        {"x": folders / "noisy" / f"{name}.flac"},
        {"cut": {"x": tmp_path / "cut.wav"}},
        tmp_path / "r",
        dnsmos=False,
        progress=False,
    )
    page = done["page"].read_text(encoding="utf-8")
    assert len(_sources(page, "audio")) == 3 and "not scored against it" in page
    assert (
        done["summary"]["cut"]["pesq"][3] == 0
        and done["summary"]["noisy"]["pesq"][3] == 1
    )


def test_without_clean_references_the_page_has_dnsmos_only(folders, tmp_path):
    pytest.importorskip("speechmos")
    one = {"x": folders / "noisy" / "p232_001.flac"}
    done = write_report(
        None,
        one,
        {QUIET: {"x": folders / QUIET / "p232_001.wav"}},
        tmp_path,
        progress=False,
    )
    page = done["page"].read_text(encoding="utf-8")
    assert (
        "<th>DNSMOS OVRL" in page
        and "<th>PESQ" not in page
        and "No clean references" in page
    )
    assert set(done["summary"]["noisy"]) == {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}
    assert 1.0 < done["summary"][QUIET]["dnsmos_ovrl"][0] < 5.0


def test_cmse_report_command(folders, tmp_path, capsys):
    code = cli.report_main(
        [
            "--noisy",
            str(folders / "noisy"),
            "--clean",
            str(folders / "clean"),
            "--system",
            f"{LOW}={folders / LOW}",
            "-o",
            str(tmp_path / "r"),
            "--no-dnsmos",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "3 files" in out and "1 missing" in out
    assert (
        len(
            _sources(
                (tmp_path / "r" / "index.html").read_text(encoding="utf-8"), "audio"
            )
        )
        == 3 * 3 - 1
    )
    for bad in (
        [f"{LOW}"],
        [f"noisy={folders / LOW}"],
        [f"a={folders / LOW}", f"a={folders / LOW}"],
    ):
        with pytest.raises(SystemExit):
            cli.report_main(
                [
                    "--noisy",
                    str(folders / "noisy"),
                    "-o",
                    str(tmp_path / "x"),
                    *[arg for value in bad for arg in ("--system", value)],
                ]
            )
    assert (
        cli.report_main(
            ["--noisy", str(tmp_path / "absent"), "-o", str(tmp_path / "x")]
        )
        == 2
    )
    assert "no such folder" in capsys.readouterr().err


def test_cmse_enhance_report(tiny_model_folder, folders, tmp_path, monkeypatch, capsys):
    # DNSMOS "not installed": keeps the test fast
    for module in (
        "speechmos",
        "speechmos.dnsmos",
    ):
        monkeypatch.setitem(sys.modules, module, None)
    (tmp_path / "in put").mkdir()
    sf.write(
        tmp_path / "in put" / "é 1.wav",
        sf.read(NOISY / "p232_001.flac")[0][:16000],
        16000,
    )
    code = cli.enhance_main(
        [
            str(tmp_path / "in put"),
            "-o",
            str(tmp_path / "out"),
            "--source",
            str(tiny_model_folder),
        ]
    )
    assert code == 0
    code = cli.enhance_main(
        [
            str(tmp_path / "in put"),
            "-o",
            str(tmp_path / "out2"),
            "--source",
            str(tiny_model_folder),
            "--report",
        ]
    )
    page = (tmp_path / "out2" / "report" / "index.html").read_text(encoding="utf-8")
    assert code == 0 and "listening page" in capsys.readouterr().out
    assert _sources(page, "audio") == [
        urllib.parse.quote(f"audio/{k}/é 1.wav") for k in ("noisy", "system1")
    ]
    assert "DNSMOS not computed" in page
    assert not (tmp_path / "out" / "report").exists()


# --- in a real browser ---------------------------------------------------


def _browser():
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip(
        "no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it): "
        "the page is not checked in a browser here"
    )


def _chromium(tmp_path, *args):
    command = [
        _browser(),
        "--headless=new",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--allow-file-access-from-files",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _selftest(tmp_path, page):
    result = _chromium(tmp_path, "--dump-dom", page.as_uri() + "?selftest")
    found = re.search(r'<pre id="selftest">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the page's self-test wrote nothing:\n{result.stderr[-3000:]}"
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(found.group(1))), console


def test_browser_opens_the_page_plays_every_file_and_loads_every_image(
    report, folders, tmp_path
):
    done, page = report
    checked, console = _selftest(tmp_path, done["page"])
    assert checked["errors"] == [] and console == []
    assert len(checked["audio"]) == len(_sources(page, "audio"))
    originals = {"noisy": "noisy", "clean": "clean", "system1": QUIET, "system2": LOW}
    for item in checked["audio"]:
        _, folder, key = urllib.parse.unquote(item["src"]).split("/", 2)
        (original,) = (folders / originals[folder]).glob(
            glob.escape(key[: -len(".wav")]) + ".*"
        )
        expected = sf.info(original).duration
        assert "error" not in item and item["duration"] == pytest.approx(
            expected, abs=0.05
        ), item
    assert len(checked["images"]) == 4 and all(item["ok"] for item in checked["images"])

    shot = tmp_path / "shot.png"
    _chromium(
        tmp_path,
        "--window-size=1280,1600",
        f"--screenshot={shot}",
        done["page"].as_uri(),
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1280) and shot.stat().st_size > 20_000
    assert pixels[..., :3].std() > 0.05  # not blank: text, table, plot


def test_browser_self_test_reports_a_broken_page(report, tmp_path):
    done, page = report
    broken = done["page"].with_name("broken.html")
    broken.write_text(
        page.replace(
            '<pre id="selftest"',
            '<img src="no such.png"><script>notDefined()</script><pre id="selftest"',
        ),
        encoding="utf-8",
    )
    try:
        checked, console = _selftest(tmp_path, broken)
    finally:
        broken.unlink()
    assert any("notDefined" in error for error in checked["errors"]) and console
    assert any(
        "no%20such.png" in error or "no such.png" in error
        for error in checked["errors"]
    )
    assert [item["ok"] for item in checked["images"]].count(False) == 1
