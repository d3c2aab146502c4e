"""Issue 29: corpus mode, the listening page, model folders and the Python API
tried as a hostile user would; on real VoiceBank-DEMAND recordings. Each test
is named after the issue's item."""

import contextlib
import json
import os
import pathlib
import re
import shutil
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from cmse_speechbrain import cli

from conftest import MINI_VOICEBANK, sha256

NOISY = sorted((MINI_VOICEBANK / "noisy_testset_wav").glob("*.flac"))


def _real_wavs(folder, count=3, prefix="in"):
    """Real noisy recordings as 16-bit WAVs ``folder/<prefix><k>.wav``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, source in enumerate(NOISY[:count]):
        audio, rate = sf.read(source, dtype="float32")
        paths.append(folder / f"{prefix}{k}.wav")
        sf.write(paths[-1], audio, rate, subtype="PCM_16")
    return paths


def _enhance(*args):
    return cli.enhance_main([str(a) for a in args])


def test_1_output_manifest_never_replaces_an_input_or_a_foreign_file(
    tiny_model_folder, tmp_path, capsys
):
    wavs = _real_wavs(tmp_path / "om")
    before = {path: sha256(path) for path in wavs}
    out = tmp_path / "out"
    # the output manifest named as an input file
    assert (
        _enhance(
            wavs[0],
            "-o",
            out,
            "--source",
            tiny_model_folder,
            "--output-manifest",
            wavs[0],
        )
        == 2
    )
    assert "must end in .csv or .json" in capsys.readouterr().err
    # ... with a manifest extension: an audio file renamed .csv is an input too
    named = tmp_path / "om" / "take.csv"
    shutil.copy(wavs[1], named)
    assert (
        _enhance(
            named, "-o", out, "--source", tiny_model_folder, "--output-manifest", named
        )
        == 2
    )
    assert f"would overwrite the input {named}" in capsys.readouterr().err
    # in --manifest mode, an existing audio file that is not an input
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"ID,wav\nu0,{wavs[0]}\n")
    foreign = tmp_path / "other.csv"
    shutil.copy(wavs[2], foreign)
    assert (
        _enhance(
            "--manifest",
            manifest,
            "-o",
            out,
            "--source",
            tiny_model_folder,
            "--output-manifest",
            foreign,
        )
        == 2
    )
    assert "exists and is not a manifest cmse-enhance wrote" in capsys.readouterr().err
    # the failure manifest beside it may not replace an input either
    shutil.copy(wavs[2], tmp_path / "x_failures.csv")
    assert (
        _enhance(
            "--manifest",
            manifest,
            "-o",
            out,
            "--source",
            tiny_model_folder,
            "--output-manifest",
            tmp_path / "x.csv",
        )
        == 2
    )
    assert "x_failures.csv exists and is not a manifest" in capsys.readouterr().err
    assert {path: sha256(path) for path in wavs} == before
    assert sha256(foreign) == sha256(wavs[2])
    # its own manifest from an earlier run is replaced
    assert (
        _enhance(
            "--manifest",
            manifest,
            "-o",
            out,
            "--source",
            tiny_model_folder,
            "--output-manifest",
            tmp_path / "ok.json",
        )
        == 0
    )
    assert (
        _enhance(
            "--manifest",
            manifest,
            "-o",
            out,
            "--source",
            tiny_model_folder,
            "--output-manifest",
            tmp_path / "ok.json",
            "--overwrite",
        )
        == 0
    )
    assert list(json.loads((tmp_path / "ok.json").read_text())) == ["u0"]


def test_2_a_non_finite_output_is_a_named_failure_and_no_file(
    tiny_model_folder, tmp_path, capsys
):
    inputs = tmp_path / "in"
    speech, rate = sf.read(NOISY[0], dtype="float32")
    inputs.mkdir()
    # finite samples
    sf.write(inputs / "loud.wav", speech * 1e37, rate, subtype="FLOAT")
    sf.write(inputs / "max.wav", np.sign(speech + 1e-9) * 3.4e38, rate, subtype="FLOAT")
    _real_wavs(inputs, count=1)
    out = tmp_path / "out"
    assert _enhance(inputs, "-o", out, "--source", tiny_model_folder) == 1
    err = capsys.readouterr().err
    for name in ("loud.wav", "max.wav"):
        assert (
            f"{inputs / name}: the enhanced signal has NaN or infinite samples" in err
        )
        assert not (out / name).exists()
    assert sf.info(out / "in0.wav").frames == len(speech)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    # a model folder whose weights are NaN is refused when it loads, naming the file
    broken = tmp_path / "nan_model"
    shutil.copytree(tiny_model_folder, broken)
    state = torch.load(broken / "enhance_model.ckpt")
    state[next(k for k, v in state.items() if v.is_floating_point())].fill_(
        float("nan")
    )
    torch.save(state, broken / "enhance_model.ckpt")
    assert _enhance(inputs / "in0.wav", "-o", tmp_path / "o2", "--source", broken) == 2
    assert f"{broken / 'enhance_model.ckpt'}: the weights" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def _without_pretrainer(source, folder):
    shutil.copytree(source, folder)
    text = (folder / "hyperparams.yaml").read_text()
    (folder / "hyperparams.yaml").write_text(text[: text.index("pretrainer:")])
    return folder


@pytest.mark.parametrize("trust", [False, True])
def test_3_a_folder_whose_weights_are_not_loaded_is_refused(
    tiny_model_folder, tmp_path, capsys, trust
):
    from cmse_speechbrain.inference import EnhanceCMCR

    folder = _without_pretrainer(tiny_model_folder, tmp_path / "model")
    wav = _real_wavs(tmp_path / "in", count=1)[0]
    trust_flag = ["--trust-code"] if trust else []
    with pytest.warns(UserWarning) if trust else contextlib.nullcontext():
        code = _enhance(wav, "-o", tmp_path / "out", "--source", folder, *trust_flag)
    assert code == 2 and not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert (
        f"{folder / 'hyperparams.yaml'}: no 'pretrainer' "
        "loads the weights of 'enhance_model'" in err
    )
    with (
        pytest.raises(ValueError, match="refusing random weights"),
        pytest.warns(UserWarning) if trust else contextlib.nullcontext(),
    ):
        EnhanceCMCR.from_hparams(source=folder, trust_code=trust)


@pytest.fixture(scope="module")
def shipped():
    from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder

    return EnhanceCMCR.from_hparams(source=str(shipped_model_folder()))


def test_4_padded_items_equal_the_same_items_alone(shipped):
    """Three real files of different lengths in one padded batch, with the
    shipped model: each equals itself enhanced alone, and its padding is zeros;
    the recogniser of EnhancedASR hears the same."""
    from cmse_speechbrain.asr import EnhancedASR

    signals = [
        torch.from_numpy(sf.read(path, dtype="float32")[0][:n])
        for path, n in zip(NOISY, (24000, 17000, 9000))
    ]
    length = max(s.numel() for s in signals)
    batch = torch.stack(
        [torch.nn.functional.pad(s, (0, length - s.numel())) for s in signals]
    )
    lengths = torch.tensor([s.numel() / length for s in signals])
    together = shipped.enhance_batch(batch, lengths)
    alone = [shipped.enhance_batch(s) for s in signals]
    for k, (s, a) in enumerate(zip(signals, alone)):
        assert float((together[k, : s.numel()] - a).abs().max()) < 1e-4, k
        assert not together[k, s.numel() :].any(), k

    class Heard:  # a recogniser that keeps what it hears
        sample_rate = 16000

        def transcribe_batch(self, wavs, wav_lens):
            self.wavs = wavs
            return ["X"] * len(wavs), None

    recogniser = Heard()
    EnhancedASR(shipped, recogniser).transcribe_batch(batch, lengths)
    heard_alone = Heard()
    EnhancedASR(shipped, heard_alone).transcribe_batch(
        signals[2].unsqueeze(0), torch.tensor([1.0])
    )
    n = signals[2].numel()
    assert float((recogniser.wavs[2, :n] - heard_alone.wavs[0]).abs().max()) < 1e-4


def test_17_enhance_batch_checks_its_input(shipped):
    speech = torch.from_numpy(sf.read(NOISY[0], dtype="float32")[0][:16000])
    bad = {
        "too short: 1 samples per signal": speech.reshape(-1, 1),
        "the input has NaN or infinite samples": torch.cat(
            [speech[:-1], torch.tensor([float("nan")])]
        ),
        "torch.int16 samples": (speech * 32767).to(torch.int16),
        "empty input": torch.zeros(0),
        "got shape [1, 1, 16000]": speech.reshape(1, 1, -1),
        "got ndarray": speech.numpy(),
        "lengths must be 1 relative lengths": (speech, torch.tensor([1.5])),
    }
    for message, value in bad.items():
        noisy, lengths = value if isinstance(value, tuple) else (value, None)
        with pytest.raises((TypeError, ValueError), match=re.escape(message)) as error:
            shipped.enhance_batch(noisy, lengths)
        assert "\n" not in str(error.value) and str(error.value).startswith(
            "enhance_batch: "
        )
    # what SpeechBrain's enhance_batch takes: float [B, samples] or [samples], any
    # float type
    assert shipped.enhance_batch(speech.double()).shape == speech.shape
    assert shipped.enhance_batch(speech.unsqueeze(0), torch.tensor([1.0])).shape == (
        1,
        16000,
    )


def test_5_a_rerun_with_another_model_or_setting_is_refused_and_the_same_one_keeps(
    tiny_model_folder, tmp_path, capsys
):
    inputs = tmp_path / "in"
    _real_wavs(inputs, count=2)
    out = tmp_path / "out"
    base = [inputs, "-o", out, "--output-manifest", out / "m.csv"]
    assert _enhance(*base, "--source", tiny_model_folder) == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    other = tmp_path / "other_model"
    shutil.copytree(tiny_model_folder, other)
    state = torch.load(other / "enhance_model.ckpt")
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] += 0.01
    torch.save(state, other / "enhance_model.ckpt")
    capsys.readouterr()
    for extra in (
        ["--source", other],
        ["--source", tiny_model_folder, "--chunk-seconds", "0.5"],
    ):
        assert _enhance(*base, *extra) == 2
        err = capsys.readouterr().err
        assert (
            f"{out} holds outputs made with other settings" in err
            and "--overwrite" in err
        )
    assert _enhance(*base, "--source", other) == 2
    assert "(the model's weights differ" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.wav")} == stamps
    # the same settings keep; --spectrogram draws the kept files' PNGs
    assert _enhance(*base, "--source", tiny_model_folder, "--spectrogram") == 0
    assert "(2 already done, kept)" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.png")) == ["in0.png", "in1.png"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.wav")} == stamps
    # --overwrite redoes them with the new model, which a rerun then keeps
    assert _enhance(*base, "--source", other, "--overwrite") == 0
    assert all(p.stat().st_mtime_ns != stamps[p] for p in stamps)
    assert _enhance(*base, "--source", other) == 0
    assert "(2 already done, kept)" in capsys.readouterr().out


@pytest.mark.parametrize("trust", [False, True])
def test_6_links_out_of_a_model_folder_and_text_checkpoints_are_refused(
    tiny_model_folder, tmp_path, capsys, trust
):
    wav = _real_wavs(tmp_path / "in", count=1)[0]
    flags = ["--trust-code"] if trust else []
    outside = tmp_path / "elsewhere"
    shutil.copytree(tiny_model_folder, outside)
    for name in ("enhance_model.ckpt", "hyperparams.yaml"):
        folder = tmp_path / f"model_{name}"
        shutil.copytree(tiny_model_folder, folder)
        (folder / name).unlink()
        (folder / name).symlink_to(outside / name)
        with warnings.catch_warnings():  # trust_code warns once it loads
            warnings.simplefilter("ignore")
            code = _enhance(wav, "-o", tmp_path / "out", "--source", folder, *flags)
        err = capsys.readouterr().err
        assert code == 2, err
        assert (
            f"{folder / name}: links to {outside / name}, outside the model folder"
            in err
        )
    folder = tmp_path / "text_ckpt"
    shutil.copytree(tiny_model_folder, folder)
    (folder / "enhance_model.ckpt").write_text("rubbish, not weights\n")
    with warnings.catch_warnings():  # trust_code warns once it loads
        warnings.simplefilter("ignore")
        code = _enhance(wav, "-o", tmp_path / "out", "--source", folder, *flags)
    err = capsys.readouterr().err
    assert code == 2 and "cannot be loaded safely" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_7_an_absurd_rate_header_is_refused_in_one_line_at_once(
    tiny_model_folder, tmp_path, capsys
):
    import time

    inputs = tmp_path / "in"
    _real_wavs(inputs, count=1)
    speech, _ = sf.read(NOISY[1], dtype="int16")
    sf.write(inputs / "one_hz.wav", speech[:3000], 1, subtype="PCM_16")  # a 6 KB file
    assert (inputs / "one_hz.wav").stat().st_size < 6100
    sf.write(inputs / "too_fast.wav", speech[:3000], 1_000_000, subtype="PCM_16")
    start = time.perf_counter()
    assert _enhance(inputs, "-o", tmp_path / "out", "--source", tiny_model_folder) == 1
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert (
        f"{inputs / 'one_hz.wav'}: sampling rate 1 Hz is outside 4000-768000 Hz" in err
    )
    assert f"{inputs / 'too_fast.wav'}: sampling rate 1000000 Hz is outside" in err
    assert (tmp_path / "out" / "in0.wav").is_file()


def _report(root, out, *systems, flags=()):
    return cli.report_main(
        [str(a) for a in ["--noisy", root / "noisy", "-o", out, "--no-dnsmos", *flags]]
        + [arg for system in systems for arg in ("--system", system)]
    )


def _report_folders(root, count=2):
    """noisy/ and a system s1/ of real recordings."""
    for name in ("noisy", "s1"):
        _real_wavs(root / name, count=count, prefix="f")
    return root


def test_9_a_short_file_shows_as_too_short_and_report_errors_keep_the_failures(
    tiny_model_folder, tmp_path, capsys, monkeypatch
):
    root = _report_folders(tmp_path)
    speech, rate = sf.read(NOISY[0], dtype="float32")
    sf.write(root / "s1" / "f0.wav", speech[:200], rate)
    assert _report(root, tmp_path / "r", f"s1={root / 's1'}") == 0
    assert "1 missing or unreadable" in capsys.readouterr().out
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "missing: too short: 200 samples at 16000 Hz, need at least 512" in page
    # a listening page that fails for any reason keeps the run's failure list
    from cmse_speechbrain import report

    def broken(*args, **kwargs):
        raise RuntimeError("no page today")

    monkeypatch.setattr(report, "write_report", broken)
    sf.write(root / "noisy" / "bad.wav", speech[:100], rate)
    assert (
        cli.enhance_main(
            [
                str(root / "noisy"),
                "-o",
                str(tmp_path / "out"),
                "--source",
                str(tiny_model_folder),
                "--report",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert f"{root / 'noisy' / 'bad.wav'}: too short" in err
    assert "listening page not written: no page today" in err


def test_10_an_unwritable_output_is_refused_before_any_work(
    tiny_model_folder, tmp_path, capsys
):
    inputs = tmp_path / "in"
    _real_wavs(inputs, count=2)
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    # the output folder cannot be made
    assert (
        _enhance(
            inputs,
            "-o",
            blocker / "out",
            "--source",
            tiny_model_folder,
            "--output-manifest",
            tmp_path / "m.csv",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"{blocker / 'out'}: cannot write there (Not a directory" in err
    assert len(err.strip().splitlines()) == 1
    # only the manifest's folder is unwritable: nothing is enhanced, its real path
    # is named
    out = tmp_path / "out"
    assert (
        _enhance(
            inputs,
            "-o",
            out,
            "--source",
            tiny_model_folder,
            "--output-manifest",
            blocker / "lists" / "m.csv",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"{blocker / 'lists'}: cannot write there" in err and ".cmse-" not in err
    assert not list(out.glob("*.wav"))


def test_14_enhance_file_names_a_bad_output_name_before_the_work(
    tiny_model_folder, tmp_path
):
    from cmse_speechbrain.inference import EnhanceCMCR

    enhancer = EnhanceCMCR.from_hparams(source=tiny_model_folder)
    wav = _real_wavs(tmp_path / "in", count=1)[0]
    (tmp_path / "a folder").mkdir()
    for name, message in [
        ("no_extension", "no extension, so no audio format"),
        ("a folder", "is a folder"),
        ("x.mp3", "cannot write 16-bit PCM audio as .mp3"),
    ]:
        with pytest.raises(ValueError) as error:
            enhancer.enhance_file(wav, tmp_path / name)
        assert str(error.value).startswith(f"{tmp_path / name}: {message}")
        assert ".cmse-" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a folder", "in"]
    assert (
        enhancer.enhance_file(wav, tmp_path / "ok.flac").numel() == sf.info(wav).frames
    )


def test_15_dollar_signs_in_system_names(tmp_path, capsys):
    root = _report_folders(tmp_path)
    assert _report(root, tmp_path / "r", f"price $x_$={root / 's1'}") == 0
    assert "price $x_$" in (tmp_path / "r" / "index.html").read_text(encoding="utf-8")


def test_16_speechbrain_calling_conventions_are_accepted(tiny_model_folder, tmp_path):
    from cmse_speechbrain.inference import EnhanceCMCR

    enhancer = EnhanceCMCR.from_hparams(
        source=str(tiny_model_folder),
        huggingface_cache_dir=str(tmp_path / "cache"),
        revision="main",
        use_auth_token=False,
        pymodule_file="custom.py",
        savedir=str(tmp_path / "save"),
    )
    assert (
        EnhanceCMCR.from_hparams(source=str(tiny_model_folder), download_only=True)
        is None
    )
    wav = _real_wavs(tmp_path / "in", count=1)[0]
    assert (
        enhancer.enhance_file(str(wav), savedir=str(tmp_path / "save")).numel()
        == sf.info(wav).frames
    )
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        enhancer.enhance_file(str(wav), colour="blue")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "save").exists()


def test_12_and_19_manifests_that_do_not_hold_paths_are_refused_naming_the_row(
    tiny_model_folder, tmp_path, capsys
):
    wav = _real_wavs(tmp_path / "in", count=1)[0]
    cases = {
        "short.csv": (
            f"ID,duration,wav\nu0,1.0,{wav}\nu1,1.0\n",
            "line 3: 2 fields where the header has 3",
        ),
        "long.csv": (
            f"ID,wav\nu0,{wav},extra\n",
            "line 2: 3 fields where the header has 2",
        ),
        "number.json": (
            '{"a": {"wav": 123}}',
            "entry 'a': field 'wav' is 123, not a file path",
        ),
        "list.json": (f'[{{"wav": "{wav}"}}]', "expected a JSON object"),
        "garbage.csv": (
            bytes(range(256)) * 4,
            "not UTF-8 text, so not a CSV or JSON manifest",
        ),
    }
    for name, (content, message) in cases.items():
        manifest = tmp_path / name
        manifest.write_bytes(
            content if isinstance(content, bytes) else content.encode()
        )
        assert (
            _enhance(
                "--manifest",
                manifest,
                "-o",
                tmp_path / "out",
                "--source",
                tiny_model_folder,
            )
            == 2
        )
        err = capsys.readouterr().err
        assert (
            f"{manifest}" in err
            and message in err
            and len(err.strip().splitlines()) == 1
        ), err
    manifest = tmp_path / "d.csv"
    manifest.write_text(f"ID,duration,wav\nu0,1.0,{wav}\n")
    assert (
        _enhance(
            "--manifest",
            manifest,
            "--wav-key",
            "duration",
            "-o",
            tmp_path / "out",
            "--source",
            tiny_model_folder,
        )
        == 2
    )
    assert (
        "entry 'u0': field 'duration' is 1.0, not a file path"
        in capsys.readouterr().err
    )
    # a CSV with a UTF-8 byte-order mark (as spreadsheets write it) is read
    manifest.write_bytes(b"\xef\xbb\xbf" + f"ID,duration,wav\nu0,1.0,{wav}\n".encode())
    assert (
        _enhance(
            "--manifest",
            manifest,
            "-o",
            tmp_path / "out",
            "--source",
            tiny_model_folder,
        )
        == 0
    )
    assert (tmp_path / "out" / "in0.wav").is_file()


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "sample_rate",
            "0",
            "sample_rate must be a whole number from 4000 to 768000, got 0",
        ),
        ("sample_rate", "16000.5", "got 16000.5"),
        ("sample_rate", "[16000]", "got [16000]"),
        ("sample_rate", "-8000", "got -8000"),
        ("sample_rate", "true", "got True"),
        ("sample_rate", ".nan", "got nan"),
        (
            "min_audio_samples",
            "1.0e+400",
            "min_audio_samples must be a whole number from 1 to 160000, got inf",
        ),
        (
            "hop_length",
            "0",
            "cannot build the model (hop_length must "
            "be a whole number from 1 to 256, got 0)",
        ),
        (
            "hop_length",
            "4096",
            "hop_length must be a whole number from 1 to 256, got 4096",
        ),
        ("chunk_seconds", "!ref <nowhere>", "a reference cannot be resolved"),
    ],
)
def test_13_bad_values_in_a_model_folder_are_named_when_it_loads(
    tiny_model_folder, tmp_path, capsys, key, value, message
):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    yaml_file = folder / "hyperparams.yaml"
    lines = yaml_file.read_text().splitlines()
    top = key != "hop_length"  # the model's own hop_length is indented
    for k, line in enumerate(lines):
        if line.strip().startswith(f"{key}:") and (line == line.lstrip()) == top:
            lines[k] = line[: line.index(key)] + f"{key}: {value}"
            break
    else:
        lines.insert(0, f"{key}: {value}")
    yaml_file.write_text("\n".join(lines) + "\n")
    wav = _real_wavs(tmp_path / "in", count=1)[0]
    assert _enhance(wav, "-o", tmp_path / "out", "--source", folder) == 2
    err = capsys.readouterr().err
    assert f"{yaml_file}" in err and message in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_18_a_folder_of_every_format_soundfile_reads_is_enhanced(
    tiny_model_folder, tmp_path, capsys
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    speech, rate = sf.read(NOISY[0], dtype="float32")
    speech = speech[:16000]
    written = {
        "a.mp3": {},
        "b.caf": {},
        "c.w64": {},
        "d.opus": {"format": "OGG", "subtype": "OPUS"},
        "e.wav": {},
        "f.flac": {},
        "g.ogg": {},
        "h.aiff": {},
    }
    for name, options in written.items():
        sf.write(inputs / name, speech, rate, **options)
    (inputs / "notes.txt").write_text("not audio")
    assert _enhance(inputs, "-o", tmp_path / "out", "--source", tiny_model_folder) == 0
    assert f"enhanced {len(written)} of {len(written)} files" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{pathlib.Path(name).stem}.wav" for name in written
    )


def test_11_a_file_name_that_is_not_utf8_fails_alone_and_loses_nothing(
    tiny_model_folder, tmp_path, capsys, monkeypatch
):
    for module in ("speechmos", "speechmos.dnsmos"):  # no DNSMOS: fast
        monkeypatch.setitem(sys.modules, module, None)
    inputs = tmp_path / "in"
    _real_wavs(inputs, count=2)
    odd = os.fsdecode(bytes(inputs) + b"/caf\xe9.wav")
    os.rename(inputs / "in1.wav", odd)
    out = tmp_path / "out"
    code = _enhance(
        inputs,
        "-o",
        out,
        "--source",
        tiny_model_folder,
        "--output-manifest",
        out / "m.csv",
        "--report",
    )
    captured = capsys.readouterr()
    assert code == 1
    assert f"  {inputs}/caf\\xe9.wav: the file name is not valid UTF-8" in captured.err
    assert (
        "listening page:" in captured.out and (out / "report" / "index.html").is_file()
    )
    failures = (out / "m_failures.csv").read_text(encoding="utf-8")
    assert "caf\\xe9" in failures and "not valid UTF-8" in failures
    assert (out / "in0.wav").is_file() and "in0" in (out / "m.csv").read_text(
        encoding="utf-8"
    )
    # the listening page shows it (read through its bytes)
    root = tmp_path / "page"
    for name in ("noisy", "s1"):
        (root / name).mkdir(parents=True)
        shutil.copy(odd, os.fsdecode(bytes(root / name) + b"/caf\xe9.wav"))
    assert (
        _report(root, tmp_path / "r", f"s1={root / 's1'}", flags=["--link-audio"]) == 0
    )
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "caf\\xe9" in page and "missing" not in page.split("<h2>Files</h2>")[1]


def test_19_report_keys_cannot_leave_the_report_folder(tmp_path):
    from cmse_speechbrain.report import write_report

    wav = _real_wavs(tmp_path / "in", count=1)[0]
    done = write_report(
        None,
        {"../../escaped": wav},
        {"s": {"../../escaped": wav}},
        tmp_path / "a" / "b" / "r",
        dnsmos=False,
        progress=False,
    )
    report = tmp_path / "a" / "b" / "r"
    assert done["files"] == 1 and list(report.glob("spectrograms/__/__/escaped.png"))
    assert [
        p for p in tmp_path.rglob("*") if p.is_file() and report not in p.parents
    ] == [wav]


def test_19_partials_left_by_a_killed_writer_are_removed_a_live_ones_kept(
    tiny_model_folder, tmp_path
):
    inputs = tmp_path / "in"
    _real_wavs(inputs, count=1)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    dead = out / "sub" / ".cmse-999999999-abcd.wav"
    legacy = out / ".cmse-k3j2l1.wav"  # written before partials named their writer
    live = out / f".cmse-{os.getpid()}-efgh.wav"
    for path in (dead, legacy, live):
        path.write_bytes(b"half a file")
    os.utime(legacy, (0, 0))
    assert (
        _enhance(
            inputs,
            "-o",
            out,
            "--source",
            tiny_model_folder,
            "--output-manifest",
            out / "m.csv",
        )
        == 0
    )
    assert not dead.exists() and not legacy.exists() and live.exists()


def test_19_a_page_linking_the_audio_says_it_moves_only_with_it(tmp_path, capsys):
    root = _report_folders(tmp_path, count=1)
    assert (
        _report(root, tmp_path / "r", f"s1={root / 's1'}", flags=["--link-audio"]) == 0
    )
    assert "move the page only together with them" in capsys.readouterr().out
    assert (
        "move the page only together with them"
        in (tmp_path / "r" / "index.html").read_text()
    )


SPECTROGRAM_PEAK = """
import resource, sys, numpy as np, soundfile as sf, torch
from cmse_speechbrain.cli import save_spectrogram
speech = torch.from_numpy(sf.read(sys.argv[1], dtype="float32")[0])
# 30 min
audio = speech.repeat(30 * 60 * 16000 // speech.numel() + 1)[: 30 * 60 * 16000]
quieter = audio * 0.5
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
save_spectrogram(audio, quieter, 16000, sys.argv[2])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_8_the_spectrogram_of_a_long_file_is_drawn_from_a_bounded_summary(tmp_path):
    """Part of item 8: with --spectrogram, 30 min of real speech add little memory
    (the full STFTs of both signals took over 1 GB)."""
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SPECTROGRAM_PEAK,
            str(NOISY[0]),
            str(tmp_path / "s.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    growth_mb = float(result.stdout.split()[-1])
    assert growth_mb < 200, growth_mb
    assert (tmp_path / "s.png").stat().st_size > 10_000


def _long_speech(seconds):
    """Real noisy speech (the shipped recordings end to end, repeated) [samples]
    at 16 kHz."""
    files = NOISY + sorted((MINI_VOICEBANK / "noisy_trainset_28spk_wav").glob("*.flac"))
    speech, total = [], 0
    while total < seconds * 16000:
        audio = sf.read(files[len(speech) % len(files)], dtype="float32")[0]
        speech.append(audio)
        total += len(audio)
    return np.concatenate(speech)[: int(seconds * 16000)]


@pytest.fixture
def read_spy(monkeypatch):
    """Frames of every SoundFile.read, and the files read whole with sf.read."""
    reads = {"blocks": [], "whole": []}
    block_read, whole_read = sf.SoundFile.read, sf.read

    def spy_block(self, frames=-1, *args, **kwargs):
        reads["blocks"].append(self.frames - self.tell() if frames < 0 else frames)
        return block_read(self, frames, *args, **kwargs)

    def spy_whole(file, *args, **kwargs):
        reads["whole"].append(os.fsdecode(file))
        return whole_read(file, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy_block)
    monkeypatch.setattr(sf, "read", spy_whole)
    return reads


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2)])
def test_8_a_long_file_streamed_disk_to_disk_equals_the_in_memory_output(
    shipped, tmp_path, rate, channels
):
    """Item 8: 25 s of real speech, the shipped model in 4 s chunks: the file
    enhanced disk to disk equals enhance_file's whole-signal result (16-bit
    PCM: within one step), at 16 kHz and at 44.1 kHz stereo (resampled
    block by block both ways), louder than full scale included (scaled by
    the same peak)."""
    from cmse_speechbrain.dsp import resample

    shipped.hparams.chunk_seconds = 4.0
    speech = torch.from_numpy(_long_speech(25))
    audio = resample(speech, 16000, rate).numpy()
    audio = np.stack([audio, 0.6 * audio], axis=1) if channels == 2 else audio
    noisy = tmp_path / "noisy.flac"
    sf.write(noisy, audio, rate, subtype="PCM_24")
    loud = tmp_path / "loud.wav"
    sf.write(loud, audio * 6, rate, subtype="FLOAT")  # enhanced louder than full scale
    for source in (noisy, loud):
        shipped.enhance_file(source, tmp_path / "memory.wav")
        gain = shipped.enhance_to_file(source, tmp_path / "streamed.wav")
        whole = sf.read(tmp_path / "memory.wav", dtype="int16")[0].astype(int)
        streamed, streamed_rate = sf.read(tmp_path / "streamed.wav", dtype="int16")
        assert streamed_rate == rate and streamed.shape == whole.shape == (len(audio),)
        assert np.abs(streamed.astype(int) - whole).max() <= 1
        assert (gain < 1.0) == (source == loud)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "loud.wav",
        "memory.wav",
        "noisy.flac",
        "streamed.wav",
    ]


def test_8_a_long_file_is_read_one_chunk_at_a_time_and_its_spectrogram_is_bounded(
    tiny_model_folder, tmp_path, read_spy
):
    """Item 8: cmse-enhance --spectrogram on 40 s of real speech at 44.1 kHz
    stereo in 1 s chunks: the file is never read whole, no read is longer
    than a chunk plus the resampler's margin while enhancing, or than one
    spectrogram block, and the picture's summary has at most 2,000 columns."""
    from cmse_speechbrain.cli import spectrogram_summary
    from cmse_speechbrain.dsp import resample
    from cmse_speechbrain.inference import FileSignal

    audio = resample(torch.from_numpy(_long_speech(40)), 16000, 44100).numpy()
    inputs = tmp_path / "in"
    inputs.mkdir()
    sf.write(
        inputs / "long.wav", np.stack([audio, audio], axis=1), 44100, subtype="PCM_16"
    )
    out = tmp_path / "out"
    read_spy["blocks"].clear()
    read_spy["whole"].clear()
    assert (
        _enhance(
            inputs,
            "-o",
            out,
            "--source",
            tiny_model_folder,
            "--chunk-seconds",
            1,
            "--spectrogram",
        )
        == 0
    )
    assert (
        sf.info(out / "long.wav").frames == len(audio)
        and (out / "long.png").stat().st_size > 10_000
    )
    assert not [path for path in read_spy["whole"] if path.endswith("long.wav")]
    blocks = read_spy["blocks"]
    spectrogram_block = (
        1024 * 256 + 512
    ) * 44100 // 16000 + 2000  # + the resampler's margin
    assert len(blocks) > 40 and max(blocks) <= spectrogram_block < len(audio) / 2, max(
        blocks
    )
    # the chunks' reads (the rest: the picture's)
    enhancing = [n for n in blocks if n < 2 * 44100]
    assert len(enhancing) > 40 and max(enhancing) <= 1.05 * 44100, max(enhancing)
    with FileSignal(inputs / "long.wav", 16000) as signal:
        assert spectrogram_summary(signal, columns=100).shape == (257, 100)


def test_8_a_later_chunk_that_is_not_finite_fails_the_file_and_leaves_nothing(
    tiny_model_folder, tmp_path, capsys
):
    """Item 8: a streamed file fails as a whole file does when its last
    seconds enhance to NaN/inf (speech x 1e37, finite samples) or hold a NaN
    sample, after its earlier chunks were enhanced and written to the
    scratch file: named in the failure list, and no output, partial, scratch
    file or picture is left."""
    from cmse_speechbrain import inference
    from cmse_speechbrain.dataio import AudioFileError

    speech = _long_speech(20)
    inputs = tmp_path / "in"
    inputs.mkdir()
    loud_end = speech.copy()
    loud_end[-3 * 16000 :] *= 1e37
    sf.write(inputs / "loud_end.wav", loud_end, 16000, subtype="FLOAT")
    nan_end = speech.copy()
    nan_end[-100] = np.nan
    sf.write(inputs / "nan_end.wav", nan_end, 16000, subtype="FLOAT")
    out = tmp_path / "out"
    assert (
        _enhance(
            inputs,
            "-o",
            out,
            "--source",
            tiny_model_folder,
            "--chunk-seconds",
            2,
            "--spectrogram",
        )
        == 1
    )
    err = capsys.readouterr().err
    assert (
        f"{inputs / 'loud_end.wav'}: the enhanced signal has NaN or infinite samples"
        in err
    )
    assert f"{inputs / 'nan_end.wav'}: contains NaN or infinite samples" in err
    assert list(out.iterdir()) == []

    enhancer = inference.EnhanceCMCR.from_hparams(
        source=str(tiny_model_folder), overrides={"chunk_seconds": 2.0}
    )
    written, append = [], inference._FloatFile.append

    def spy(self, samples):
        written.append((self.path, samples.numel()))
        return append(self, samples)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference._FloatFile, "append", spy)
        with pytest.raises(
            AudioFileError, match="the enhanced signal has NaN or infinite"
        ):
            enhancer.enhance_to_file(inputs / "loud_end.wav", out / "loud_end.wav")
    assert sum(n for _, n in written) >= 16 * 16000  # the first 16 s were done
    assert written[0][0].parent == out and written[0][0].name.startswith(".cmse-")
    assert list(out.iterdir()) == []


def test_19_several_processes_end_in_the_failure_list_not_a_launcher_report(
    tiny_model_folder, tmp_path, monkeypatch
):
    """Item 19: cmse-enhance --processes 2 (torchrun's launcher, gloo, CPU)
    with one unreadable file among real ones: the per-file failure list, the
    failure manifest and exit status 1, and no ChildFailedError report."""
    import subprocess

    inputs = tmp_path / "in"
    _real_wavs(inputs, count=3)
    (inputs / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt not audio")
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom cmse_speechbrain import cli\n"
            "sys.exit(cli.enhance_main())",
            str(inputs),
            "-o",
            str(out),
            "--source",
            str(tiny_model_folder),
            "--output-manifest",
            str(out / "m.csv"),
            "--processes",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert (
        "enhanced 3 of 4 files" in result.stdout
        and "with 2 process(es)" in result.stdout
    )
    assert (
        f"1 failed:\n  {inputs / 'corrupt.wav'}: not a readable audio file"
        in result.stderr
    )
    assert "ChildFailedError" not in result.stderr and "Traceback" not in result.stderr
    assert "corrupt" in (out / "m_failures.csv").read_text()
    # under torchrun, --processes would start processes in each process: refused
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as stop:
        _enhance(inputs, "-o", out, "--processes", "2")
    assert stop.value.code == 2
