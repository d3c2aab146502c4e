#!/usr/bin/env python3
"""Throughput and peak memory of ``cmse-enhance`` over a corpus (issue 20).

Builds a corpus of real noisy speech (``--minutes``, default 10): LibriSpeech
train-clean-100 utterances from ``../shared/data`` (8-20 s, one per speaker)
mixed with real background recordings of ``noise_extra/`` at 0-15 dB SNR
(seeded), written as 16 kHz FLAC files at their natural lengths
(``utterances``) and, for the GPU, also cut into 4 s clips (``clips``, the
fixed-length segments of DNS-style corpora: files of equal length batch).

* CPU: the command as a user runs it, end to end (start-up and model loading
  included), with ``--batch-size 1``: 1 process x 2 threads
  (``OMP_NUM_THREADS=2 cmse-enhance ...``) against 2 processes x 1 thread
  (``OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 ...``);
  ``--configs`` picks others (``PxT``).
* GPU (``--cuda``): in this process, after a warm-up, batch sizes 1 ... 32
  in fp32 and in bf16 autocast (fp16 where bf16 is missing), on both corpora;
  and the PESQ of fp32 and autocast outputs on the 33 real VoiceBank-DEMAND
  test pairs.

Audio hours per wall hour = audio enhanced / wall time. Peak memory: the
largest resident set of any process of a run (``getrusage(RUSAGE_CHILDREN)``
of a wrapper process that runs nothing else), and on the GPU
``torch.cuda.max_memory_allocated``. Writes ``corpus_throughput.csv`` (and
``corpus_throughput_pesq.csv`` with ``--cuda``) and ``.png`` into
``--results`` (default ``benchmarks/results``) and prints a Markdown table.

    python benchmarks/corpus_throughput.py [--minutes 10] [--configs 1x2 2x1] [--cuda]
    # a quick check
    python benchmarks/corpus_throughput.py --minutes 0.3 --results /tmp/smoke
    # on a GPU machine without ../shared/data: build the corpus here, carry it
    python benchmarks/corpus_throughput.py --configs --work CORPUS_DIR \
        --data DATA_COPY --cuda \
        --keep benchmarks/results/corpus_throughput.csv --results OUT

Run it on an otherwise idle machine: the CPU figures are the machine's.

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import csv
import json
import os
import pathlib
import re
import resource
import subprocess
import sys
import tempfile
import time

from common import RESULTS, ROOT, machine, pyplot

DATA = ROOT.parent / "shared" / "data"
DRIVER = "import sys\nfrom cmse_speechbrain import cli\nsys.exit(cli.enhance_main())\n"
TOOL_LINE = re.compile(r"([\d.]+) h of audio in ([\d.]+) s")


def build_corpus(folder, minutes, data=DATA, seed=0, clip_seconds=4.0):
    """Writes ``folder/utterances`` (natural lengths) and ``folder/clips``
    (the same audio cut into ``clip_seconds`` clips); returns seconds of audio.

    Utterances built earlier with the same ``minutes`` and ``seed`` (listed
    in ``folder/corpus.json``) are reused, so a corpus built here can be
    carried to another machine without the data it was mixed from."""
    import soundfile as sf
    import torch

    from cmse_speechbrain.dataio import read_audio_checked
    from cmse_speechbrain.mixing import mix_at_snr

    manifest = folder / "corpus.json"
    wanted = {"minutes": minutes, "seed": seed}
    (folder / "utterances").mkdir(parents=True, exist_ok=True)
    built = json.loads(manifest.read_text()) if manifest.exists() else {}
    if {key: built.get(key) for key in wanted} != wanted:
        speech_files = sorted((data / "librispeech_train_clean_100").glob("*.flac"))
        noise_files = sorted((data / "noise_extra").glob("*/*.flac"))
        if not speech_files or not noise_files:
            raise SystemExit(
                f"{data}: LibriSpeech or noise_extra missing (see its README)"
            )
        rng = torch.Generator().manual_seed(seed)
        total = 0.0
        for path in speech_files:
            if total >= minutes * 60:
                break
            speech = read_audio_checked(path, 16000)
            noise_path = noise_files[
                int(torch.randint(len(noise_files), (1,), generator=rng))
            ]
            noise = read_audio_checked(noise_path, 16000)
            noise = noise.repeat(speech.numel() // noise.numel() + 1)[: speech.numel()]
            snr = torch.rand(1, generator=rng) * 15
            level = -35 + torch.rand(1, generator=rng) * 15
            noisy, _ = mix_at_snr(speech[None], noise[None], snr, level)
            sf.write(
                folder / "utterances" / f"{path.stem}.flac", noisy[0].numpy(), 16000
            )
            total += noisy.shape[-1] / 16000
        manifest.write_text(json.dumps(dict(wanted, seconds=total)))
    clip = int(clip_seconds * 16000)
    (folder / "clips").mkdir(exist_ok=True)
    for path in sorted((folder / "utterances").glob("*.flac")):
        noisy, _ = sf.read(path, dtype="float32")
        for start in range(0, len(noisy) - clip + 1, clip):
            sf.write(
                folder / "clips" / f"{path.stem}_{start // clip:02d}.flac",
                noisy[start : start + clip],
                16000,
            )
    return json.loads(manifest.read_text())["seconds"]


def measure(command, env):
    """Runs ``command`` in a wrapper process: wall seconds, largest RSS of any
    of its processes (MB), stdout, stderr, return code."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "run = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(json.dumps({'wall': time.perf_counter() - start, "
        "'code': run.returncode,\n"
        "    'rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss "
        "/ 1024,\n"
        "    'out': run.stdout, 'err': run.stderr[-3000:]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    return json.loads(result.stdout)


def cpu_runs(corpus, work, configs, seconds, repeats):
    driver = work / "enhance.py"
    driver.write_text(DRIVER)
    rows = []
    for config in configs:
        processes, threads = (int(v) for v in config.lower().split("x"))
        launcher = (
            [sys.executable]
            if processes == 1
            else [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={processes}",
            ]
        )
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(threads),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        }
        best = None
        for _ in range(repeats):
            out = work / f"out_{config}"
            run = measure(
                launcher
                + [
                    str(driver),
                    str(corpus),
                    "-o",
                    str(out),
                    "--overwrite",
                    "--output-manifest",
                    str(out / "enhanced.csv"),
                    "--device",
                    "cpu",
                ],
                env,
            )
            if run["code"] != 0:
                raise SystemExit(f"{config} failed:\n{run['err']}")
            if best is None or run["wall"] < best["wall"]:
                best = run
        tool = TOOL_LINE.search(best["out"])
        rows.append(
            {
                "device": "cpu",
                "corpus": corpus.name,
                "processes": processes,
                "threads": threads,
                "batch_size": 1,
                "precision": "fp32",
                "audio_s": round(seconds, 1),
                "wall_s": round(best["wall"], 2),
                "audio_h_per_h": round(seconds / best["wall"], 2),
                "tool_wall_s": float(tool.group(2)) if tool else "",
                "tool_audio_h_per_h": round(seconds / float(tool.group(2)), 2)
                if tool
                else "",
                "peak_rss_mb": round(best["rss_mb"]),
                "gpu_peak_mb": "",
                "load_average": round(os.getloadavg()[0], 2),
            }
        )
        print(
            f"  {config}: {rows[-1]['audio_h_per_h']} h/h end "
            f"to end, peak RSS {rows[-1]['peak_rss_mb']} MB",
            flush=True,
        )
    return rows


def cuda_runs(corpora, work, batch_sizes):
    import torch

    from cmse_speechbrain.corpus import enhance_corpus
    from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder

    enhancer = EnhanceCMCR.from_hparams(
        source=str(shipped_model_folder()), run_opts={"device": "cuda:0"}
    )
    low = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    rows = []
    for corpus in corpora:
        files = sorted(corpus.glob("*.flac"))
        enhance_corpus(
            enhancer, work / "warmup", inputs=files[:4], resume=False, progress=False
        )
        for precision in ("fp32", low):
            for batch in batch_sizes:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                summary = enhance_corpus(
                    enhancer,
                    work / f"cuda_{corpus.name}_{precision}_{batch}",
                    inputs=[corpus],
                    resume=False,
                    batch_size=batch,
                    precision=precision,
                    progress=False,
                )
                torch.cuda.synchronize()
                rows.append(
                    {
                        "device": torch.cuda.get_device_name(0),
                        "corpus": corpus.name,
                        "processes": 1,
                        "threads": torch.get_num_threads(),
                        "batch_size": batch,
                        "precision": precision,
                        "audio_s": round(summary.audio_seconds, 1),
                        "wall_s": round(summary.wall_seconds, 2),
                        "audio_h_per_h": round(summary.speed, 1),
                        "tool_wall_s": "",
                        "tool_audio_h_per_h": "",
                        "peak_rss_mb": round(
                            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                        ),
                        "gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20),
                        "load_average": round(os.getloadavg()[0], 2),
                    }
                )
                print(
                    f"  cuda {corpus.name} {precision} batch "
                    f"{batch}: {rows[-1]['audio_h_per_h']} h/h, "
                    f"GPU peak {rows[-1]['gpu_peak_mb']} MB",
                    flush=True,
                )
    return rows, enhancer, low


def pesq_rows(enhancer, low, data=DATA, audio_path=None):
    """PESQ of fp32 and autocast outputs on the real VoiceBank-DEMAND test pairs.

    Where ``pesq`` cannot be imported (a machine without a compiler for its
    source package), the outputs are saved to ``audio_path`` (``.npz``) and
    scored later with ``--pesq-from``; returns [] then."""
    from cmse_speechbrain.corpus import autocast_context, enhance_group
    from cmse_speechbrain.dataio import read_audio_checked

    outputs = {}
    for noisy_path in sorted((data / "voicebank_demand_test" / "noisy").glob("*.wav")):
        noisy = read_audio_checked(noisy_path, 16000)
        for precision in ("fp32", low):
            enhanced = enhance_group(
                enhancer, [noisy], autocast_context("cuda", precision)
            )[0]
            outputs[f"{noisy_path.stem}:{precision}"] = enhanced.float().cpu().numpy()
    try:
        import pesq  # noqa: F401
    except ImportError:
        import numpy as np

        np.savez_compressed(audio_path, **outputs)
        print(
            "pesq is not installed: outputs saved to "
            f"{audio_path}, score them with --pesq-from"
        )
        return []
    return score_pesq(outputs, data)


def score_pesq(outputs, data=DATA):
    """Rows of PESQ per file: fp32 against the other precision in ``outputs``
    (``{"<file>:<precision>": waveform}``)."""
    import torch

    from cmse_speechbrain.dataio import read_audio_checked
    from cmse_speechbrain.metrics import pesq_wb

    rows = []
    for key in sorted(k for k in outputs if k.endswith(":fp32")):
        stem = key.split(":")[0]
        low = next(
            k.split(":")[1] for k in outputs if k.startswith(stem + ":") and k != key
        )
        clean = read_audio_checked(
            data / "voicebank_demand_test" / "clean" / f"{stem}.wav", 16000
        )
        scores = {
            p: pesq_wb(torch.as_tensor(outputs[f"{stem}:{p}"]), clean)
            for p in ("fp32", low)
        }
        rows.append(
            {
                "file": stem,
                "pesq_fp32": round(scores["fp32"], 4),
                f"pesq_{low}": round(scores[low], 4),
                "difference": round(scores[low] - scores["fp32"], 4),
            }
        )
    return rows


def write(rows, path):
    with open(path, "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")


def table(rows):
    print(
        "\n| device | corpus | processes x threads | batch | precision | "
        "audio h / wall h | peak RSS per process (MB) | GPU peak (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['device']} | {r['corpus']} | {r['processes']} x {r['threads']} "
            f"| {r['batch_size']} | {r['precision']} | {r['audio_h_per_h']} | "
            f"{r['peak_rss_mb']} | {r['gpu_peak_mb'] or '-'} |"
        )


def plot(rows, path):
    plt = pyplot()
    if plt is None:
        print("matplotlib missing: no PNG")
        return
    cpu = [r for r in rows if r["device"] == "cpu"]
    gpu = [r for r in rows if r["device"] != "cpu"]
    fig, axes = plt.subplots(
        1, 2 if gpu else 1, figsize=(11 if gpu else 5.5, 4), squeeze=False
    )
    labels = [f"{r['processes']} proc x {r['threads']} thr" for r in cpu]
    bars = axes[0][0].bar(labels, [r["audio_h_per_h"] for r in cpu], color="tab:blue")
    for bar, r in zip(bars, cpu):
        axes[0][0].annotate(
            f"{r['peak_rss_mb']} MB/proc",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axes[0][0].set_ylabel("audio hours per wall hour")
    axes[0][0].set_title(
        f"CPU, {cpu[0]['audio_s'] / 60:.1f} min of audio" if cpu else "CPU"
    )
    if gpu:
        ax = axes[0][1]
        for key in sorted({(r["corpus"], r["precision"]) for r in gpu}):
            data = [r for r in gpu if (r["corpus"], r["precision"]) == key]
            ax.plot(
                [r["batch_size"] for r in data],
                [r["audio_h_per_h"] for r in data],
                marker="o",
                label=f"{key[0]}, {key[1]}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("audio hours per wall hour")
        ax.set_title(gpu[0]["device"])
        ax.legend(fontsize=8)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="audio to build (at least)"
    )
    parser.add_argument(
        "--configs",
        nargs="*",
        default=["1x2", "2x1"],
        help="CPU runs, PROCESSESxTHREADS",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="CPU runs: the best of this many"
    )
    parser.add_argument(
        "--cuda",
        action="store_true",
        help="also the GPU batch-size sweep and PESQ check",
    )
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32]
    )
    parser.add_argument(
        "--data", type=pathlib.Path, default=DATA, help="the shared data folder"
    )
    parser.add_argument(
        "--results",
        type=pathlib.Path,
        default=RESULTS,
        help="folder for the CSV and PNG",
    )
    parser.add_argument(
        "--work",
        type=pathlib.Path,
        default=None,
        help="folder for the corpus and outputs",
    )
    parser.add_argument(
        "--keep",
        type=pathlib.Path,
        default=None,
        help="an earlier corpus_throughput.csv whose rows of other devices are kept",
    )
    parser.add_argument(
        "--pesq-from",
        type=pathlib.Path,
        default=None,
        help=(
            "score saved GPU outputs (.npz) into "
            "corpus_throughput_pesq.csv, nothing else"
        ),
    )
    args = parser.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    if args.pesq_from:
        import numpy as np

        with np.load(args.pesq_from) as saved:
            report_pesq(score_pesq(dict(saved), args.data), args.results)
        return
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="corpus_throughput_") as tmp:
        work = args.work or pathlib.Path(tmp)
        start = time.perf_counter()
        seconds = build_corpus(work / "corpus", args.minutes, args.data)
        print(
            f"corpus: {seconds / 60:.1f} min of real noisy speech "
            f"({time.perf_counter() - start:.0f} s to build)"
        )
        rows = cpu_runs(
            work / "corpus" / "utterances", work, args.configs, seconds, args.repeats
        )
        pesq = []
        if args.cuda:
            gpu, enhancer, low = cuda_runs(
                [work / "corpus" / "utterances", work / "corpus" / "clips"],
                work,
                args.batch_sizes,
            )
            rows += gpu
            pesq = pesq_rows(
                enhancer, low, args.data, args.results / "corpus_throughput_outputs.npz"
            )
    if args.keep and args.keep.exists():
        devices = {r["device"] for r in rows}
        with open(args.keep, newline="", encoding="utf-8") as fin:
            rows = [r for r in csv.DictReader(fin) if r["device"] not in devices] + rows
        for r in rows:  # numbers read back from the CSV are text
            for key in ("processes", "threads", "batch_size", "peak_rss_mb"):
                r[key] = int(float(r[key])) if r[key] != "" else ""
            for key in ("audio_s", "audio_h_per_h"):
                r[key] = float(r[key])
    if rows:
        table(rows)
        write(rows, args.results / "corpus_throughput.csv")
        plot(rows, args.results / "corpus_throughput.png")
    report_pesq(pesq, args.results)


def report_pesq(rows, results):
    if rows:
        worst = max(abs(r["difference"]) for r in rows)
        print(
            f"PESQ fp32 vs autocast on {len(rows)} real "
            f"pairs: largest difference {worst:.3f}"
        )
        write(rows, results / "corpus_throughput_pesq.csv")


if __name__ == "__main__":
    main()
