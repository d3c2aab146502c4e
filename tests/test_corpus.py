"""Issue 20: enhancing a whole corpus (``cmse_speechbrain.corpus``): torchrun
sharding, resuming after a kill, failure and missing-path manifests, batching;
on 20 real VoiceBank-DEMAND recordings."""

import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from cmse_speechbrain import cli
from cmse_speechbrain.corpus import KILL_AFTER_ENV, autocast_context, enhance_group
from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder

from conftest import MINI_VOICEBANK, ROOT

DRIVER = "import sys\nfrom cmse_speechbrain import cli\nsys.exit(cli.enhance_main())\n"
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
LSB = 1 / 32768  # one step of the 16-bit outputs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """20 real recordings in two sub-folders (test/, train/)."""
    folder = tmp_path_factory.mktemp("corpus") / "noisy"
    files = sorted((MINI_VOICEBANK / "noisy_testset_wav").glob("*.flac"))
    files += sorted((MINI_VOICEBANK / "noisy_trainset_28spk_wav").glob("*.flac"))[
        : 20 - len(files)
    ]
    for path in files:
        part = "test" if "testset" in path.parent.name else "train"
        (folder / part).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / part / path.name)
    assert len(list(folder.rglob("*.flac"))) == 20
    return folder


def _one_thread_run(*args):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cli.enhance_main([str(a) for a in args])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(corpus, tiny_model_folder, tmp_path_factory):
    """The corpus enhanced by one process with one thread."""
    out = tmp_path_factory.mktemp("reference") / "enhanced"
    assert (
        _one_thread_run(
            corpus,
            "-o",
            out,
            "--source",
            tiny_model_folder,
            "--output-manifest",
            out / "enhanced.csv",
        )
        == 0
    )
    return out


def _audio(folder):
    return {
        p.relative_to(folder).as_posix(): sf.read(p, dtype="float32")[0]
        for p in sorted(folder.rglob("*.wav"))
    }


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fin:
        return list(csv.DictReader(fin))


def test_torchrun_two_processes_give_the_outputs_of_one(
    corpus, reference, tiny_model_folder, tmp_path
):
    driver = tmp_path / "enhance.py"
    driver.write_text(DRIVER)
    out = tmp_path / "enhanced"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(driver),
            str(corpus),
            "-o",
            str(out),
            "--source",
            str(tiny_model_folder),
            "--output-manifest",
            str(out / "enhanced.csv"),
        ],
        cwd=ROOT,
        env=ONE_THREAD,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "enhanced 20 of 20 files" in result.stdout
        and "with 2 process(es)" in result.stdout
    )
    assert "[rank 1/2]" in result.stderr  # both ranks had files
    two, one = _audio(out), _audio(reference)
    assert sorted(two) == sorted(one) and len(one) == 20
    assert all(key.startswith(("test/", "train/")) for key in one)  # the input layout
    worst = max(float(np.abs(two[key] - one[key]).max()) for key in one)
    assert worst <= 1e-6, worst
    rows, reference_rows = (
        _rows(out / "enhanced.csv"),
        _rows(reference / "enhanced.csv"),
    )
    assert [(r["ID"], r["duration"]) for r in rows] == [
        (r["ID"], r["duration"]) for r in reference_rows
    ]
    assert all(r["wav"] == str((out / f"{r['ID']}.wav").resolve()) for r in rows)
    assert _rows(out / "enhanced_failures.csv") == []


def test_a_killed_run_resumes_without_redoing_done_files(
    corpus, reference, tiny_model_folder, tmp_path
):
    driver = tmp_path / "enhance.py"
    driver.write_text(DRIVER)
    out = tmp_path / "enhanced"
    args = [
        str(corpus),
        "-o",
        str(out),
        "--source",
        str(tiny_model_folder),
        "--output-manifest",
        str(out / "enhanced.csv"),
    ]
    killed = subprocess.run(
        [sys.executable, str(driver), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**ONE_THREAD, KILL_AFTER_ENV: "7"},
    )
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL: nothing cleaned up
    done = {p: p.stat() for p in out.rglob("*.wav")}
    assert len(done) == 7 and not (out / "enhanced.csv").exists()
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no partial file
    # a file cut short by something else than this tool is not complete: redone
    cut = sorted(done)[0]
    audio, rate = sf.read(cut)
    sf.write(cut, audio[: len(audio) // 2], rate)
    del done[cut]

    assert _one_thread_run(*args) == 0
    for path, before in done.items():
        after = path.stat()
        assert (after.st_ino, after.st_mtime_ns) == (
            before.st_ino,
            before.st_mtime_ns,
        ), path
    resumed, one = _audio(out), _audio(reference)
    assert sorted(resumed) == sorted(one)
    assert max(float(np.abs(resumed[k] - one[k]).max()) for k in one) <= 1e-6
    assert len(_rows(out / "enhanced.csv")) == 20

    # --overwrite redoes them all
    assert _one_thread_run(*args, "--overwrite") == 0
    assert all(
        path.stat().st_mtime_ns != before.st_mtime_ns for path, before in done.items()
    )


def test_resume_reports_what_it_kept(
    corpus, reference, tiny_model_folder, tmp_path, capsys
):
    out = tmp_path / "enhanced"
    shutil.copytree(reference, out)
    code = cli.enhance_main(
        [
            str(corpus),
            "-o",
            str(out),
            "--source",
            str(tiny_model_folder),
            "--output-manifest",
            str(out / "enhanced.csv"),
        ]
    )
    stdout = capsys.readouterr().out
    assert (
        code == 0
        and "enhanced 20 of 20 files" in stdout
        and "(20 already done, kept)" in stdout
    )


def test_a_bad_file_lands_in_the_failure_manifest(
    corpus, tiny_model_folder, tmp_path, capsys
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in sorted((corpus / "test").iterdir())[:2]:
        shutil.copy(path, inputs / path.name)
    (inputs / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt not audio")
    data, rate = sf.read(sorted(inputs.glob("*.flac"))[0])
    sf.write(inputs / "short.wav", data[:100], rate)  # shorter than one STFT frame
    out = tmp_path / "out"
    code = cli.enhance_main(
        [
            str(inputs),
            "-o",
            str(out),
            "--source",
            str(tiny_model_folder),
            "--output-manifest",
            str(out / "m.json"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    failures = {row["ID"]: row for row in _rows(out / "m_failures.csv")}
    assert sorted(failures) == ["corrupt", "short"]
    assert failures["corrupt"]["reason"].startswith("not a readable audio file")
    assert failures["corrupt"]["wav"] == str(inputs / "corrupt.wav")
    assert failures["short"]["reason"].startswith("too short: 100 samples")
    assert f"  {inputs / 'corrupt.wav'}: not a readable audio file" in err
    manifest = json.loads((out / "m.json").read_text())
    assert sorted(manifest) == sorted(p.stem for p in inputs.glob("*.flac"))
    for key, entry in manifest.items():
        assert entry["duration"] == pytest.approx(
            sf.info(inputs / f"{key}.flac").duration
        )
        assert sf.info(entry["wav"]).frames == sf.info(inputs / f"{key}.flac").frames


def test_a_manifest_with_missing_paths_is_reported_by_id(
    corpus, tiny_model_folder, tmp_path, capsys
):
    from speechbrain.dataio.dataset import DynamicItemDataset

    present = sorted((corpus / "train").iterdir())[:3]
    lines = ["ID,duration,wav,spk_id"]
    lines += [
        f"utt{i},1.0,$data_root/train/{p.name},{p.name[:4]}"
        for i, p in enumerate(present)
    ]
    lines += [
        "gone1,1.0,$data_root/train/nowhere.flac,p000",
        "gone2,1.0,/no/such/dir/x.wav,p000",
    ]
    manifest = tmp_path / "train.csv"
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    args = [
        "--manifest",
        str(manifest),
        "-o",
        str(out),
        "--source",
        str(tiny_model_folder),
    ]
    code = cli.enhance_main(args)  # no --data-root: refused up front
    assert code == 2 and "$data_root" in capsys.readouterr().err and not out.exists()

    code = cli.enhance_main(args + ["--data-root", str(corpus)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"  gone1: {corpus}/train/nowhere.flac: file not found" in err.splitlines()
    assert "  gone2: /no/such/dir/x.wav: file not found" in err.splitlines()
    failures = _rows(out / "train_failures.csv")
    assert [(r["ID"], r["reason"]) for r in failures] == [
        ("gone1", "file not found"),
        ("gone2", "file not found"),
    ]
    # the enhanced manifest (default: OUTDIR/<input manifest name>) loads in
    # SpeechBrain as it is
    dataset = DynamicItemDataset.from_csv(str(out / "train.csv"))
    assert sorted(dataset.data) == ["utt0", "utt1", "utt2"]
    for i, path in enumerate(present):
        entry = dataset.data[f"utt{i}"]
        # layout under --data-root
        assert entry["wav"] == str(out / "train" / f"{path.stem}.wav")
        assert entry["spk_id"] == path.name[:4]
        assert entry["duration"] == pytest.approx(sf.info(path).duration)

    # JSON in, JSON out, {data_root}
    entries = {
        f"utt{i}": {"noisy_wav": f"{{data_root}}/train/{p.name}", "words": "X"}
        for i, p in enumerate(present)
    }
    (tmp_path / "m.json").write_text(json.dumps(entries))
    code = cli.enhance_main(
        [
            "--manifest",
            str(tmp_path / "m.json"),
            "--data-root",
            str(corpus),
            "-o",
            str(out),
            "--source",
            str(tiny_model_folder),
        ]
    )
    assert code == 0, capsys.readouterr().err
    # same outputs as the CSV run
    assert "(3 already done, kept)" in capsys.readouterr().out
    written = json.loads((out / "m.json").read_text())
    assert written["utt1"]["noisy_wav"] == str(out / "train" / f"{present[1].stem}.wav")
    assert written["utt1"]["words"] == "X"


def test_an_output_folder_holding_inputs_is_refused(
    corpus, tiny_model_folder, tmp_path, capsys
):
    data = tmp_path / "data"
    data.mkdir()
    wav = shutil.copy(next((corpus / "test").iterdir()), data)
    (tmp_path / "lists").mkdir()
    manifest = tmp_path / "lists" / "m.csv"
    manifest.write_text(f"ID,wav\nu1,{wav}\n")
    for out in (data, tmp_path):  # the input's folder, a folder above it
        code = cli.enhance_main(
            [
                "--manifest",
                str(manifest),
                "-o",
                str(out),
                "--source",
                str(tiny_model_folder),
            ]
        )
        assert code == 2 and "holds the input" in capsys.readouterr().err
    assert sorted(p.name for p in data.iterdir()) == [pathlib.Path(wav).name]
    with pytest.raises(SystemExit):
        cli.enhance_main(["-o", str(tmp_path)])  # neither inputs nor --manifest
    code = cli.enhance_main(
        [str(wav), "-o", str(tmp_path / "o"), "--precision", "bf16"]
    )
    assert code == 2 and "CUDA only" in capsys.readouterr().err


def _cut(path, samples):
    return sf.read(path, dtype="float32")[0][:samples]


def test_batched_output_equals_unbatched(corpus, tmp_path, capsys, monkeypatch):
    """With the shipped model: files padded within their last STFT frame
    (equal frame counts) give the unbatched output up to float rounding, i.e.
    within one 16-bit step; padding into one more frame would not (the level
    and the attention see every frame), which the batching never does."""
    enhancer = EnhanceCMCR.from_hparams(source=str(shipped_model_folder()))
    hop = enhancer.mods.enhance_model.hop_length
    files = sorted((corpus / "test").iterdir())
    base = 40 * hop
    lengths = [
        base,
        base + 37,
        base + 101,
        base + hop - 1,
    ]  # one frame count: one batch
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, n in enumerate(lengths):
        sf.write(inputs / f"same{i}.wav", _cut(files[i], n), 16000, subtype="FLOAT")
    sf.write(inputs / "other.wav", _cut(files[4], base + hop), 16000, subtype="FLOAT")
    # > chunk: alone
    sf.write(inputs / "long.wav", _cut(files[5], 20000), 16000, subtype="FLOAT")

    signals = [torch.from_numpy(_cut(files[i], n)) for i, n in enumerate(lengths)]
    alone = [enhance_group(enhancer, [s], autocast_context("cpu"))[0] for s in signals]
    batched = enhance_group(enhancer, signals, autocast_context("cpu"))
    worst = max(float((a - b).abs().max()) for a, b in zip(alone, batched))
    # float rounding of another batch shape, below a 16-bit step
    assert worst < 1e-5, worst
    # the control: one more frame of padding changes the output by far more
    padded = torch.nn.functional.pad(signals[0], (0, hop))
    assert (
        float((enhancer.enhance_batch(padded)[: lengths[0]] - alone[0]).abs().max())
        > 1e-3
    )

    shapes = []
    original = EnhanceCMCR.enhance_batch

    def spy(self, noisy, lengths=None):
        shapes.append(tuple(noisy.shape))
        return original(self, noisy, lengths)

    monkeypatch.setattr(EnhanceCMCR, "enhance_batch", spy)
    outs = {}
    for batch in (1, 8):
        outs[batch] = tmp_path / f"b{batch}"
        assert (
            cli.enhance_main(
                [
                    str(inputs),
                    "-o",
                    str(outs[batch]),
                    "--batch-size",
                    str(batch),
                    "--chunk-seconds",
                    "1",
                ]
            )
            == 0
        ), capsys.readouterr().err
    assert (len(lengths), base + hop - 1) in shapes  # the four went as one batch
    one, eight = _audio(outs[1]), _audio(outs[8])
    assert (
        sorted(one)
        == sorted(eight)
        == sorted(f"{p.stem}.wav" for p in inputs.iterdir())
    )
    assert max(float(np.abs(one[k] - eight[k]).max()) for k in one) <= LSB + 1e-9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_autocast_on_cuda_stays_close_to_fp32(corpus):
    enhancer = EnhanceCMCR.from_hparams(
        source=str(shipped_model_folder()), run_opts={"device": "cuda:0"}
    )
    noisy = torch.from_numpy(
        sf.read(next((corpus / "test").iterdir()), dtype="float32")[0]
    )
    fp32 = enhance_group(enhancer, [noisy], autocast_context("cuda"))[0]
    for precision in ("bf16", "fp16"):
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            continue
        low = enhance_group(enhancer, [noisy], autocast_context("cuda", precision))[0]
        snr = 10 * torch.log10(fp32.pow(2).sum() / (low.float() - fp32).pow(2).sum())
        assert snr > 20, (precision, float(snr))
