"""A static listening page: players, spectrograms and metrics per file.

:func:`write_report` compares the noisy files, any number of systems' outputs
and (optionally) the clean references, matched by their path relative to
their folder without the extension. It writes ``index.html`` and its assets
into one folder: 16-bit WAV copies of every file at its own rate
(``audio/``), one spectrogram PNG per file with all versions side by side on
one colour scale (``spectrograms/``), the per-file PESQ/STOI plot
(``per_file.png``) and the per-file scores (``metrics.csv``). The page opens
from ``file://`` with no server and no network (no external script, font or
style); players load nothing until played and images load lazily, so a page
of hundreds of files opens at once. A file missing or unreadable in one
system shows as "missing" with the reason, never as a crash.

Metrics: PESQ-WB, STOI, CSIG/CBAK/COVL, SI-SDR against the clean reference
(at 16 kHz), the residual noise (noise attenuation in the speech pauses and
speech-level change in dB, from the clean reference and the noisy input:
:func:`cmse_speechbrain.metrics.pause_attenuation`) and DNSMOS SIG/BAK/OVRL
where ``speechmos`` is installed; the summary gives their mean over files
with a 95 % Student-t interval.

Opening ``index.html?selftest`` makes the page load every player's metadata
and every image, and write what it found (durations, failures, script
errors) as JSON into ``<pre id="selftest">``: the browser test reads it.

Authors
 * cmse-speechbrain contributors 2026
"""

import csv
import html
import importlib
import logging
import math
import os
import pathlib
import urllib.parse

import numpy as np
import torch
import torchaudio.functional as AF
from tqdm import tqdm

from cmse_speechbrain.corpus import collect_inputs
from cmse_speechbrain.dataio import (
    AudioFileError,
    atomic_output,
    audio_info,
    printable,
    read_audio_checked,
    write_audio_atomic,
)
from cmse_speechbrain.evaluation import LENGTH_TOLERANCE
from cmse_speechbrain.metrics import (
    composite_scores,
    dnsmos_scores,
    pause_attenuation,
    si_sdr,
    stoi_score,
)

logger = logging.getLogger(__name__)

INTRUSIVE = {
    "pesq": "PESQ",
    "stoi": "STOI",
    "csig": "CSIG",
    "cbak": "CBAK",
    "covl": "COVL",
    "si_sdr": "SI-SDR",
    "pause_attenuation_db": "pause attenuation dB",
    "speech_level_db": "speech level dB",
}
DNSMOS = {
    "dnsmos_sig": "DNSMOS SIG",
    "dnsmos_bak": "DNSMOS BAK",
    "dnsmos_ovrl": "DNSMOS OVRL",
}
METRIC_RATE = 16000
#: Said on a page whose players link to the original files (``copy_audio=False``).
LINKED_AUDIO_NOTE = (
    "The players link to the original audio files by paths relative to this page: "
    "move the page only together with them (or write it with copies, without "
    "--link-audio)."
)
DYNAMIC_RANGE_DB = 80.0
SPECTROGRAM_DPI = 64
PANEL_INCHES = (3.6, 2.4)


def audio_files(source, exclude=None):
    """``{key: path}``: the audio files of a folder (recursively) or a mapping.

    The key is the path relative to the folder, without its extension, so
    that ``a/x.flac`` and ``a/x.wav`` in two folders are the same file.

    Arguments
    ---------
    source : str, pathlib.Path or dict
        A folder, or a ready ``{key: path}`` mapping (returned as it is).
    exclude : str or pathlib.Path, optional
        A folder never entered (the report's own folder).

    Example
    -------
    >>> import soundfile as sf
    >>> tmp = getfixture("tmp_path")
    >>> (tmp / "sub").mkdir()
    >>> for name in ["b.wav", "sub/a é.flac", "notes.txt"]:
    ...     sf.write(tmp / name, [0.0] * 80, 16000, format="WAV")
    >>> sorted(audio_files(tmp))
    ['b', 'sub/a é']
    """
    if isinstance(source, dict):
        return {page_key(key): pathlib.Path(path) for key, path in source.items()}
    folder = pathlib.Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = {}
    for path, relative, *problem in collect_inputs([folder], exclude=exclude):
        if relative is None:
            raise OSError(f"{path}: {problem[0] if problem else 'cannot read'}")
        key = page_key(relative.with_suffix("").as_posix())
        if key in files:
            logger.warning(
                "%s: same name as %s; the report uses the first", path, files[key]
            )
            continue
        files[key] = path
    return files


def page_key(key):
    """A file's key as the page names it and its assets: printable text
    (:func:`~cmse_speechbrain.dataio.printable`) and a relative path that
    stays inside the report folder (``..`` and a leading ``/`` neutralised).

    Example
    -------
    >>> page_key("../../etc/x"), page_key("/abs/y"), page_key("sub/ok")
    ('__/__/etc/x', 'abs/y', 'sub/ok')
    """
    parts = [
        ("__" if part == ".." else part)
        for part in printable(key).split("/")
        if part not in ("", ".")
    ]
    return "/".join(parts) or "_"


def mean_interval(values, confidence=0.95):
    """Mean of the finite values and its Student-t interval: (mean, low, high, n).

    The interval is NaN for fewer than two values.

    Example
    -------
    >>> mean, low, high, n = mean_interval([1.0, 2.0, 3.0, float("nan")])
    >>> mean, round(low, 3), round(high, 3), n
    (2.0, -0.484, 4.484, 3)
    """
    from scipy import stats

    values = np.asarray([v for v in values if v is not None], dtype=float)
    values = values[np.isfinite(values)]
    n = int(values.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(
        stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    )
    return mean, mean - half, mean + half, n


def _load(path):
    """(mono float32 tensor at the file's own rate, rate); AudioFileError if unusable
    (too short for one spectrogram frame included)."""
    rate = audio_info(path).samplerate
    return read_audio_checked(path, rate, min_samples=_n_fft(rate)), rate


def _n_fft(rate):
    """The spectrogram's frame: about 32 ms, a power of two."""
    return 1 << max(8, round(math.log2(rate * 0.032)))


def _at_metric_rate(audio, rate):
    return audio if rate == METRIC_RATE else AF.resample(audio, rate, METRIC_RATE)


def _scores(signal, reference, noisy, use_dnsmos):
    """The metrics of one version of a file (16 kHz tensors), and why some are
    absent ("").

    The residual-noise metrics need the noisy input (None: not scored)."""
    scores, problems = {}, []
    if reference is not None:
        if abs(signal.numel() - reference.numel()) > LENGTH_TOLERANCE:
            problems.append(
                f"{signal.numel()} samples at 16 kHz but the clean reference has "
                f"{reference.numel()}: not scored against it"
            )
        else:
            n = min(signal.numel(), reference.numel())
            sig, ref = signal[:n].double(), reference[:n].double()
            composite = composite_scores(ref.numpy(), sig.numpy(), METRIC_RATE)
            scores.update({k: composite[k] for k in ("pesq", "csig", "cbak", "covl")})
            scores["stoi"] = stoi_score(sig, ref, METRIC_RATE)
            scores["si_sdr"] = si_sdr(ref.numpy(), sig.numpy())
            if (
                noisy is not None
                and abs(noisy.numel() - reference.numel()) <= LENGTH_TOLERANCE
            ):
                scores.update(pause_attenuation(sig, noisy, ref, METRIC_RATE))
    if use_dnsmos:
        try:
            scores.update(
                {
                    f"dnsmos_{k}": v
                    for k, v in dnsmos_scores(signal, METRIC_RATE).items()
                }
            )
        except (ValueError, RuntimeError) as error:
            problems.append(f"no DNSMOS ({' '.join(str(error).split())})")
    return scores, "; ".join(problems)


def _spectrogram_db(audio, rate):
    n_fft = _n_fft(rate)
    spec = torch.stft(
        audio, n_fft, n_fft // 2, window=torch.hann_window(n_fft), return_complex=True
    )
    return (20 * torch.log10(spec.abs() + 1e-6)).numpy()


def _plain(text):
    """Text that matplotlib shows as it is (a ``$`` would start math text).

    Example
    -------
    >>> _plain("price $5") == "price " + chr(92) + "$5"
    True
    """
    return str(text).replace("$", r"\$")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_spectrograms(panels, path):
    """One PNG of several spectrograms side by side on one colour scale.

    Arguments
    ---------
    panels : list of (str, (torch.Tensor, int) or None)
        Title and (audio, rate) of each panel; None draws an empty "missing" panel.
    path : pathlib.Path
        The PNG, written atomically.

    Returns
    -------
    (int, int)
        Width and height in pixels.
    """
    plt = _pyplot()
    specs = [
        None if item is None else (_spectrogram_db(*item), *item) for _, item in panels
    ]
    peaks = [float(s[0].max()) for s in specs if s is not None]
    vmax = max(peaks) if peaks else 0.0
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(PANEL_INCHES[0] * len(panels), PANEL_INCHES[1]),
        sharey=True,
        squeeze=False,
    )
    image = None
    for ax, (title, _), spec in zip(axes[0], panels, specs):
        ax.set_title(_plain(title), fontsize=9)
        if spec is None:
            ax.text(
                0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes
            )
            ax.set_xticks([])
            continue
        db, audio, rate = spec
        image = ax.imshow(
            db,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=vmax - DYNAMIC_RANGE_DB,
            vmax=vmax,
            extent=[0, len(audio) / rate, 0, rate / 2000],
            interpolation="nearest",
        )
        ax.set_xlabel("s", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("kHz", fontsize=8)
    fig.tight_layout()
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), pad=0.01, fraction=0.02).ax.tick_params(
            labelsize=7
        )
    with atomic_output(path) as partial:
        fig.savefig(partial, dpi=SPECTROGRAM_DPI, format="png")
    size = fig.get_size_inches() * SPECTROGRAM_DPI
    plt.close(fig)
    return int(round(size[0])), int(round(size[1]))


def plot_per_file(keys, scores, rows, metrics, path):
    """One panel per metric: each row's (noisy, systems) score for each file."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(
        len(metrics), 1, figsize=(10, 2.2 * len(metrics)), sharex=True, squeeze=False
    )
    x = np.arange(1, len(keys) + 1)
    for ax, metric in zip(axes[:, 0], metrics):
        for k, name in enumerate(rows):
            y = [scores[name].get(key, {}).get(metric, math.nan) for key in keys]
            ax.plot(
                x,
                y,
                "os^vD<>"[k % 7],
                ms=4,
                ls="none",
                color=f"C{k}",
                alpha=0.8,
                label=_plain(name),
            )
        ax.set_ylabel({**INTRUSIVE, **DNSMOS}[metric])
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].legend(fontsize=8, ncol=min(len(rows), 6), loc="best")
    axes[-1, 0].set_xlabel("file (in page order)")
    fig.tight_layout()
    with atomic_output(path) as partial:
        fig.savefig(partial, dpi=72, format="png")
    plt.close(fig)


def _url(path):
    return html.escape(
        urllib.parse.quote(os.fsencode(pathlib.PurePath(path).as_posix()))
    )


def _number(value, metric):
    return (
        "–"
        if value is None or not math.isfinite(value)
        else (f"{value:.3f}" if metric == "stoi" else f"{value:.2f}")
    )


STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1800px}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
table.sortable th{cursor:pointer;background:#f0f0f0}
table.sortable th:after{content:" \\2195";color:#999}
small{color:#666;white-space:nowrap}
section{border-top:2px solid #ddd;margin-top:1.5em}
.players{display:flex;flex-wrap:wrap;gap:.8em}
figure{margin:0}
audio{width:230px}
figcaption{font-size:.9em;font-weight:bold}
.missing{color:#b00020}
img{max-width:100%;height:auto}
nav a{margin-right:.6em;white-space:nowrap}
"""

# Sortable tables; and, with ?selftest, a check of every player and image.
SCRIPT = r"""
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], col = th.cellIndex;
    var dir = th.dataset.dir === "asc" ? -1 : 1;
    th.dataset.dir = dir > 0 ? "asc" : "desc";
    Array.from(body.rows).sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      if (!isNaN(nx) || !isNaN(ny)) {
        if (isNaN(nx)) return 1;
        if (isNaN(ny)) return -1;
        return dir * (nx - ny);
      }
      return dir * String(x).localeCompare(String(y));
    }).forEach(function (row) { body.appendChild(row); });
  });
});
if (/[?&]selftest\b/.test(location.search)) {
  var waits = [], result = {audio: [], images: [], errors: window.selftestErrors};
  document.querySelectorAll("audio").forEach(function (audio) {
    waits.push(new Promise(function (done) {
      var item = {src: audio.getAttribute("src")};
      result.audio.push(item);
      audio.addEventListener("loadedmetadata", function () {
        item.duration = audio.duration; done();
      });
      audio.addEventListener("error", function () {
        item.error = "cannot load"; done();
      });
      audio.preload = "metadata";
      audio.load();
    }));
  });
  document.querySelectorAll("img").forEach(function (img) {
    waits.push(new Promise(function (done) {
      var item = {src: img.getAttribute("src")};
      result.images.push(item);
      function check() { item.ok = img.naturalWidth > 0; done(); }
      img.addEventListener("load", check);
      img.addEventListener("error", check);
      img.loading = "eager";
      if (img.complete) check();
    }));
  });
  Promise.all(waits).then(function () {
    var out = document.getElementById("selftest");
    out.textContent = JSON.stringify(result);
    out.hidden = false;
  });
}
"""

# First in <head>: records script errors, failed resources and console errors.
ERROR_CAPTURE = r"""
window.selftestErrors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  window.selftestErrors.push(t && t !== window && t.tagName ?
    "cannot load " + t.tagName.toLowerCase() + " " + (t.getAttribute("src") || "") :
    String(e.message));
}, true);
(function (original) {
  console.error = function () {
    window.selftestErrors.push(Array.from(arguments).join(" "));
    original.apply(console, arguments);
  };
})(console.error);
"""


def _summary_table(rows, columns, stats):
    head = "".join(
        f"<th>{html.escape(title)}</th>"
        for title in ["system", "files", *columns.values()]
    )
    body = []
    for name in rows:
        n = max((stats[name][m][3] for m in columns), default=0)
        cells = [
            f'<td data-v="{html.escape(name)}">{html.escape(name)}</td>',
            f'<td data-v="{n}">{n}</td>',
        ]
        for metric in columns:
            mean, low, high, count = stats[name][metric]
            if count == 0:
                cells.append('<td data-v="">–</td>')
                continue
            interval = (
                ""
                if count < 2
                else (
                    f"<br><small>[{_number(low, metric)}, "
                    f"{_number(high, metric)}]</small>"
                )
            )
            cells.append(
                f'<td data-v="{mean:.6g}">{_number(mean, metric)}{interval}</td>'
            )
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<table class="sortable" id="summary"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def write_report(
    clean_dir,
    noisy_dir,
    systems,
    output_dir,
    *,
    dnsmos=None,
    copy_audio=True,
    title="Listening report",
    progress=True,
):
    """Writes ``output_dir/index.html``: players, spectrograms and metrics.

    Arguments
    ---------
    clean_dir : str, pathlib.Path, dict or None
        Clean references (a folder, or ``{key: path}``); None: no intrusive
        metrics, DNSMOS only.
    noisy_dir : str, pathlib.Path or dict
        The noisy inputs (a folder, or ``{key: path}``).
    systems : dict
        ``{name: folder or {key: path}}``: each system's outputs, in the
        order of the page. Names ``noisy`` and ``clean`` are reserved.
    output_dir : str or pathlib.Path
        Where the page and its assets go (created; files there are replaced).
    dnsmos : bool, optional
        DNSMOS SIG/BAK/OVRL of every version; None: if ``speechmos`` is installed.
    copy_audio : bool
        True: the players play 16-bit WAV copies at each file's rate; False:
        they link to the original files (which the browser must be able to play).
    title : str
        The page's title.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``page`` (path of index.html), ``files`` (number of files),
        ``missing`` (number of missing or unreadable versions) and
        ``summary`` (``{row: {metric: (mean, low, high, n)}}``).

    Example
    -------
    >>> import soundfile as sf
    >>> tmp = getfixture("tmp_path")
    >>> rng = np.random.default_rng(0)
    >>> for folder in ["noisy", "quiet"]:
    ...     (tmp / folder).mkdir()
    ...     noisy = 0.1 * rng.standard_normal(8000)
    ...     sf.write(tmp / folder / "take 1.wav", noisy, 16000)
    >>> done = write_report(None, tmp / "noisy", {"quiet": tmp / "quiet"},
    ...                     tmp / "report", dnsmos=False, progress=False)
    >>> done["files"], done["missing"], done["page"].name
    (1, 0, 'index.html')
    >>> sorted(p.name for p in (tmp / "report").iterdir())
    ['audio', 'index.html', 'spectrograms']
    """
    output_dir = pathlib.Path(output_dir)
    reserved = {"noisy", "clean"} & set(systems)
    if reserved:
        raise ValueError(
            f"system name {sorted(reserved)[0]!r} is reserved; give it another name"
        )
    if dnsmos is None:
        try:
            importlib.import_module("speechmos.dnsmos")
            dnsmos = True
        except ImportError:
            dnsmos = False
    columns = {"noisy": audio_files(noisy_dir, exclude=output_dir)}
    columns.update(
        {
            name: audio_files(folder, exclude=output_dir)
            for name, folder in systems.items()
        }
    )
    if clean_dir is not None:
        columns["clean"] = audio_files(clean_dir, exclude=output_dir)
    folders = {
        name: "noisy"
        if name == "noisy"
        else "clean"
        if name == "clean"
        else f"system{k}"
        for k, name in enumerate(columns)
    }
    keys = sorted(
        set().union(*(files for name, files in columns.items() if name != "clean"))
    )
    rows = [name for name in columns if name != "clean" or dnsmos]
    metrics = (list(INTRUSIVE) if clean_dir is not None else []) + (
        list(DNSMOS) if dnsmos else []
    )

    scores = {name: {} for name in columns}
    problems = {name: {} for name in columns}
    sections, csv_rows, missing = [], [], 0
    for index, key in enumerate(
        tqdm(keys, desc="report", unit="file", disable=not progress)
    ):
        loaded = {}
        for name, files in columns.items():
            if key not in files:
                problems[name][key] = "no file with this name"
                continue
            try:
                loaded[name] = _load(files[key])
            except AudioFileError as error:
                problems[name][key] = printable(error.problem)
        missing += len(columns) - len(loaded)
        at_rate = {name: _at_metric_rate(*audio) for name, audio in loaded.items()}
        reference = at_rate.get("clean")
        for name in rows:
            if name not in loaded:
                continue
            scores[name][key], problem = _scores(
                at_rate[name],
                None if name == "clean" else reference,
                at_rate.get("noisy"),
                dnsmos,
            )
            if clean_dir is not None and reference is None and name != "clean":
                problem = "; ".join(
                    filter(None, ["not scored: no clean reference", problem])
                )
            if problem:
                problems[name][key] = problem
        for name in rows:
            csv_rows.append(
                {
                    "file": key,
                    "system": name,
                    **scores[name].get(key, {}),
                    "problem": problems[name].get(key, ""),
                }
            )

        players = []
        for name, files in columns.items():
            label = html.escape(name)
            if name not in loaded:
                reason = html.escape(problems[name][key])
                players.append(
                    f'<figure class="missing"><figcaption>{label}</figcaption>'
                    f"missing: {reason}</figure>"
                )
                continue
            if copy_audio:
                relative = pathlib.PurePosixPath("audio", folders[name], key + ".wav")
                write_audio_atomic(
                    output_dir / relative, *loaded[name], scale_to_fit=True
                )
            else:
                relative = os.path.relpath(
                    os.path.abspath(files[key]), os.path.abspath(output_dir)
                )
            players.append(
                f"<figure><figcaption>{label}</figcaption>"
                f'<audio controls preload="none" src="{_url(relative)}"></audio>'
                "</figure>"
            )
        image = pathlib.PurePosixPath("spectrograms", key + ".png")
        width, height = save_spectrograms(
            [(name, loaded.get(name)) for name in columns], output_dir / image
        )
        table = ""
        if metrics:
            head = "".join(
                f"<th>{html.escape(t)}</th>"
                for t in ["", *({**INTRUSIVE, **DNSMOS}[m] for m in metrics)]
            )
            lines = []
            for name in rows:
                cells = "".join(
                    f"<td>{_number(scores[name].get(key, {}).get(m), m)}</td>"
                    for m in metrics
                )
                note = problems[name].get(key)
                note = (
                    f' <small class="missing">{html.escape(note)}</small>'
                    if note
                    else ""
                )
                lines.append(f"<tr><td>{html.escape(name)}{note}</td>{cells}</tr>")
            table = f'<table class="metrics"><tr>{head}</tr>{"".join(lines)}</table>'
        sections.append(
            f'<section id="f{index}"><h3>{html.escape(key)}</h3>'
            f'<div class="players">{"".join(players)}</div>'
            f'<img loading="lazy" src="{_url(image)}" '
            f'width="{width}" height="{height}" '
            f'alt="spectrograms of {html.escape(key)}">{table}</section>'
        )

    summary = {
        name: {
            m: mean_interval(scores[name].get(k, {}).get(m) for k in keys)
            for m in metrics
        }
        for name in rows
    }
    plotted = [
        m
        for m in (["pesq", "stoi"] if clean_dir is not None else ["dnsmos_ovrl"])
        if m in metrics
    ]
    if plotted and keys:
        plot_per_file(
            keys,
            scores,
            [r for r in rows if r != "clean"],
            plotted,
            output_dir / "per_file.png",
        )
    if metrics:
        with atomic_output(output_dir / "metrics.csv") as partial:
            with open(partial, "w", newline="", encoding="utf-8") as out:
                writer = csv.DictWriter(
                    out, fieldnames=["file", "system", *metrics, "problem"]
                )
                writer.writeheader()
                for row in csv_rows:
                    writer.writerow(
                        {
                            k: f"{v:.4f}" if isinstance(v, float) else v
                            for k, v in row.items()
                        }
                    )

    notes = [
        f"{len(keys)} files; {len(systems)} system(s): "
        f"{html.escape(', '.join(systems)) or 'none'}."
    ]
    if clean_dir is None:
        notes.append(
            "No clean references: only DNSMOS (no PESQ, STOI, CSIG, "
            "CBAK, COVL, SI-SDR, pause attenuation, speech level)."
        )
    else:
        notes.append(
            "PESQ-WB, STOI, CSIG/CBAK/COVL and SI-SDR against the clean "
            "file, at 16 kHz. Residual noise: pause attenuation = how much "
            "less power than the noisy input in the pauses of the clean file "
            "(larger: less residual noise), speech level = power against the "
            "clean file in its speech (0: kept; negative: speech attenuated "
            "too), both in dB; – where a file has no pause."
        )
    if not copy_audio:
        notes.append(LINKED_AUDIO_NOTE)
    notes.append(
        "DNSMOS P.835 from speechmos (no reference)."
        if dnsmos
        else "DNSMOS not computed (pip install 'cmse-speechbrain[dnsmos]')."
    )
    notes.append(
        "Summary: mean over the files scored, with its 95 % Student-t interval "
        "in brackets; click a column to sort. Spectrograms of one file share "
        f"one colour scale ({DYNAMIC_RANGE_DB:.0f} dB below its loudest version)."
    )
    if missing:
        notes.append(
            f'<span class="missing">{missing} version(s) '
            "missing or unreadable: see the files.</span>"
        )
    parts = [f"<h1>{html.escape(title)}</h1>", *(f"<p>{note}</p>" for note in notes)]
    if metrics:
        parts += [
            "<h2>Summary</h2>",
            _summary_table(
                rows, {m: {**INTRUSIVE, **DNSMOS}[m] for m in metrics}, summary
            ),
        ]
    if plotted and keys:
        parts.append(
            '<img src="per_file.png" alt="per-file '
            f'{" and ".join(plotted)} of each system">'
        )
    parts += [
        "<h2>Files</h2>",
        "<nav>"
        + " ".join(
            f'<a href="#f{k}">{html.escape(key)}</a>' for k, key in enumerate(keys)
        )
        + "</nav>",
        *sections,
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><script>{ERROR_CAPTURE}</script><style>{STYLE}</style>"
        "</head><body>\n"
        + "\n".join(parts)
        + f'\n<pre id="selftest" hidden></pre><script>{SCRIPT}</script></body></html>\n'
    )
    with atomic_output(output_dir / "index.html") as partial:
        partial.write_text(page, encoding="utf-8")
    return {
        "page": output_dir / "index.html",
        "files": len(keys),
        "missing": missing,
        "summary": summary,
    }
