"""The VoiceBank recipe end to end on the shipped real audio, and its resume."""

import csv
import importlib.util
import json
import logging
import math
import signal
import subprocess
import time

import pytest
import soundfile as sf
import torch

from cmse_speechbrain.checkpoints import AtomicCheckpointer
from cmse_speechbrain.metrics import nanmean

from conftest import ROOT, recipe_command, run_recipe


def test_recipe_debug_end_to_end(tmp_path):
    out = tmp_path / "debug"
    run_recipe(out, "--debug", "--debug_persistently")
    for name in [
        "train_log.txt",
        "log.txt",
        "env.log",
        "hyperparams.yaml",
        "train.py",
        "train.json",
        "valid.json",
        "test.json",
        "training_curves.png",
    ]:
        assert (out / name).exists(), name
    with open(out / "test_results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2  # --debug evaluates 2 batches of 1
    for row in rows:
        for key in ["noisy_pesq", "enhanced_pesq"]:
            assert 1.0 <= float(row[key]) <= 4.7
        assert 0.0 < float(row["enhanced_stoi"]) <= 1.0
        # residual noise: NaN only where the utterance has no pause
        attenuation = float(row["enhanced_pause_attenuation_db"])
        assert math.isnan(attenuation) or -20.0 < attenuation < 200.0
        assert -200.0 < float(row["enhanced_speech_level_db"]) < 20.0
        wav = out / "enhanced_wavs" / f"{row['id']}.wav"
        clean = (
            ROOT
            / "recipes/VoiceBank/mini_voicebank/clean_testset_wav"
            / f"{row['id']}.flac"
        )
        assert sf.info(wav).frames == sf.info(clean).frames
    summary = json.loads((out / "test_summary.json").read_text())
    assert summary["utterances"] == 2
    assert set(summary["enhanced"]) == {
        "pesq",
        "stoi",
        "pause_attenuation_db",
        "speech_level_db",
    }
    for key in [
        "pause_attenuation_db",
        "speech_level_db",
    ]:  # the NaN-aware means of the column
        column = [float(row[f"enhanced_{key}"]) for row in rows]
        assert summary["enhanced"][key] == pytest.approx(
            nanmean(column), abs=1e-3, nan_ok=True
        )
    assert list((out / "save").glob("CKPT+*"))
    # validation logs the mean pause attenuation; the selection score stays quality
    epochs = [
        line
        for line in (out / "train_log.txt").read_text().splitlines()
        if line.startswith("epoch:")
    ]
    assert epochs and all(
        "valid pause_att:" in line and "valid quality:" in line for line in epochs
    )


def _load_recipe(name):
    """A recipe's train.py as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(
        f"{name.lower()}_train", ROOT / "recipes" / name / "train.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def restore_logging():
    """SpeechBrain's experiment folder replaces the root logger's handlers."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    "recipe,flags,sets",
    [
        ("VoiceBank", [], {"test": ""}),
        ("DNS", ["--train_segment_seconds=2.0"], {"no_reverb": "_no_reverb"}),
    ],
)
def test_runner_returns_the_scores_it_reports(
    tmp_path, restore_logging, recipe, flags, sets
):
    out = tmp_path / recipe
    module = _load_recipe(recipe)
    command = recipe_command(
        out, "--debug", "--debug_persistently", *flags, recipe=recipe.lower()
    )
    results = module.run_enhancement_recipe(command[2:], module.prepare)
    assert set(results["test"]) == set(sets)
    for name, suffix in sets.items():
        stats = results["test"][name]
        summary = json.loads((out / f"test_summary{suffix}.json").read_text())
        assert summary["enhanced"] == pytest.approx(
            {
                "pesq": stats["pesq"],
                "stoi": stats["stoi"],
                "pause_attenuation_db": stats["pause_att"],
                "speech_level_db": stats["speech_level"],
            },
            nan_ok=True,
        )
        assert summary["noisy"] == {
            "pesq": stats["noisy_pesq"],
            "stoi": stats["noisy_stoi"],
        }
    if recipe == "DNS":
        summary = json.loads((out / "dnsmos_real_summary.json").read_text())
        assert results["dnsmos"] == summary
    else:
        assert results["dnsmos"] is None


@pytest.mark.parametrize(
    "flags,has_cm,has_cr",
    [
        (["--use_cm=False", "--cm_share=0", "--cr_share=0"], False, False),
        (["--cr_share=0"], True, False),
        (["--use_cm=False", "--cm_share=0"], False, True),
    ],
)
def test_ablation_flags_remove_their_part(tmp_path, flags, has_cm, has_cr):
    out = tmp_path / "ablation"
    run_recipe(out, "--debug", "--debug_epochs=1", "--debug_batches=1", *flags)
    log = (out / "train_log.txt").read_text()
    assert ("train cm:" in log) == has_cm
    assert ("train cr:" in log) == has_cr
    assert "train recon:" in log


def _epochs_logged(out):
    lines = (out / "train_log.txt").read_text().splitlines()
    return [
        int(line.split(",")[0].split(":")[1])
        for line in lines
        if line.startswith("epoch:")
    ]


def test_recipe_resumes_after_sigkill(tmp_path):
    out = tmp_path / "resume"
    extra = [
        "--number_of_epochs=3",
        "--valid_speakers=[p287]",
        "--ckpt_interval_minutes=0",
    ]
    proc = subprocess.Popen(
        recipe_command(out, *extra),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 300
        while not list((out / "save").glob("CKPT+*")):
            assert proc.poll() is None, "run ended before its first checkpoint"
            assert time.time() < deadline, "no checkpoint after 300 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _epochs_logged(out) == [1]
    result = run_recipe(out, *extra)
    assert "Loading a checkpoint" in result.stdout + result.stderr
    assert _epochs_logged(out) == [1, 2, 3]
    summary = json.loads((out / "test_summary.json").read_text())
    assert summary["checkpoint_epoch"] in (1, 2, 3)  # the best by valid PESQ


class _ExplodingSaver(torch.nn.Module):
    """Stands in for a process killed in the middle of a checkpoint."""

    explode = False

    def state_dict(self, *args, **kwargs):
        if self.explode:
            raise KeyboardInterrupt("killed while saving")
        return super().state_dict(*args, **kwargs)


def test_interrupted_save_leaves_no_checkpoint(tmp_path):
    model = torch.nn.Linear(2, 2)
    saver = _ExplodingSaver()
    ckpt = AtomicCheckpointer(tmp_path, recoverables={"model": model, "z_last": saver})
    first = ckpt.save_checkpoint(meta={"pesq": 1.0})
    saver.explode = True
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(meta={"pesq": 2.0})
    assert [c.path for c in ckpt.list_checkpoints()] == [first.path]
    assert ckpt.find_checkpoint(max_key="pesq").meta["pesq"] == 1.0
    saver.explode = False
    ckpt.save_checkpoint(meta={"pesq": 3.0})  # cleans the staging leftovers
    assert not list(tmp_path.glob(".staging-*"))


def test_recipe_under_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    command = recipe_command(
        out, "--debug", "--debug_persistently", "--distributed_backend=gloo"
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
    assert (out / "test_summary.json").exists()
    assert len(list((out / "save").glob("CKPT+*"))) >= 1
