"""Reports of a recipe run: test tables, DNSMOS of unreferenced recordings,
training curves.

Plain functions that write what a run found to its output folder; the Brain
hands them the scores and knows nothing of the files' formats. Every file is
written atomically.

* :func:`write_test_report`: ``test_results[_<set>].csv`` (per utterance)
  and ``test_summary[_<set>].json`` (means), and logs a table.
* :func:`score_without_reference`: enhances recordings that have no clean
  reference and scores them with DNSMOS; :func:`write_dnsmos_report` writes
  ``dnsmos_<name>.csv`` and ``dnsmos_<name>_summary.json``.
* :func:`plot_training_curves`: ``training_curves.png`` from the rows of a
  :class:`cmse_speechbrain.checkpoints.TrainingHistory`.

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import logging
import pathlib

from cmse_speechbrain.dataio import atomic_output, write_audio_atomic
from cmse_speechbrain.metrics import dnsmos_scores, nanmean

logger = logging.getLogger(__name__)

TEST_COLUMNS = [
    "noisy_pesq",
    "enhanced_pesq",
    "noisy_stoi",
    "enhanced_stoi",
    "enhanced_pause_attenuation_db",
    "enhanced_speech_level_db",
]
DNSMOS_KEYS = ["sig", "bak", "ovrl"]


def _write_text(path, text):
    with atomic_output(path) as partial:
        partial.write_text(text, encoding="utf-8")


def _csv_text(header, rows):
    lines = [",".join(header)]
    for utt_id, *values in rows:
        lines.append(",".join([utt_id] + [f"{float(v):.4f}" for v in values]))
    return "\n".join(lines) + "\n"


def report_path(output_folder, stem, suffix, set_name=None):
    """Where a test set's report goes: ``<stem>[_<set_name>]<suffix>``.

    Example
    -------
    >>> report_path("out", "test_summary", ".json", "no_reverb").as_posix()
    'out/test_summary_no_reverb.json'
    >>> report_path("out", "test_results", ".csv").as_posix()
    'out/test_results.csv'
    """
    name = f"{stem}_{set_name}" if set_name else stem
    return pathlib.Path(output_folder) / f"{name}{suffix}"


def write_test_report(
    output_folder, ids, scores, stats, checkpoint_epoch, set_name=None
):
    """Writes one test set's per-utterance scores and summary; logs a table.

    Arguments
    ---------
    output_folder : str or pathlib.Path
        Where ``test_results[_<set_name>].csv`` and
        ``test_summary[_<set_name>].json`` go.
    ids : list of str
        The utterances, in the order of ``scores``.
    scores : dict
        ``noisy_pesq``, ``enhanced_pesq``, ``noisy_stoi``, ``enhanced_stoi``,
        ``enhanced_pause_attenuation_db``, ``enhanced_speech_level_db``
        (:func:`cmse_speechbrain.metrics.pause_attenuation`; NaN where an
        utterance has no pause or no speech): one list of per-utterance
        scores each.
    stats : dict
        The set's means: ``pesq``, ``stoi``, ``noisy_pesq``, ``noisy_stoi``,
        ``pause_att``, ``speech_level``.
    checkpoint_epoch : int
        The epoch of the checkpoint that was tested.
    set_name : str, optional
        Suffix of the file names (None: unsuffixed, for a single test set).

    Returns
    -------
    dict
        The summary written to the JSON file.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> scores = {"noisy_pesq": [1.5, 1.2], "enhanced_pesq": [2.0, 1.8],
    ...           "noisy_stoi": [0.8, 0.7], "enhanced_stoi": [0.9, 0.8],
    ...           "enhanced_pause_attenuation_db": [12.0, float("nan")],
    ...           "enhanced_speech_level_db": [-1.0, -0.5]}
    >>> stats = {"pesq": 1.9, "stoi": 0.85, "noisy_pesq": 1.35, "noisy_stoi": 0.75,
    ...          "pause_att": 12.0, "speech_level": -0.75}
    >>> summary = write_test_report(tmp, ["u1", "u2"], scores, stats, 3, "a")
    >>> print((tmp / "test_results_a.csv").read_text(), end="")
    id,noisy_pesq,enhanced_pesq,noisy_stoi,enhanced_stoi,enhanced_pause_attenuation_db,enhanced_speech_level_db
    u1,1.5000,2.0000,0.8000,0.9000,12.0000,-1.0000
    u2,1.2000,1.8000,0.7000,0.8000,nan,-0.5000
    >>> summary["enhanced"], summary["checkpoint_epoch"]
    ({'pesq': 1.9, 'stoi': 0.85, 'pause_attenuation_db': 12.0,
      'speech_level_db': -0.75}, 3)
    """
    rows = zip(ids, *(scores[column] for column in TEST_COLUMNS))
    _write_text(
        report_path(output_folder, "test_results", ".csv", set_name),
        _csv_text(["id"] + TEST_COLUMNS, rows),
    )
    summary = {
        "utterances": len(ids),
        "noisy": {"pesq": stats["noisy_pesq"], "stoi": stats["noisy_stoi"]},
        "enhanced": {
            "pesq": stats["pesq"],
            "stoi": stats["stoi"],
            "pause_attenuation_db": stats["pause_att"],
            "speech_level_db": stats["speech_level"],
        },
        "checkpoint_epoch": checkpoint_epoch,
    }
    _write_text(
        report_path(output_folder, "test_summary", ".json", set_name),
        json.dumps(summary, indent=2) + "\n",
    )
    table = (
        f"Test set {set_name or ''} ({summary['utterances']} utterances)\n"
        f"{'':10s}{'PESQ-WB':>9s}{'STOI':>8s}\n"
        f"{'noisy':10s}{stats['noisy_pesq']:9.3f}{stats['noisy_stoi']:8.3f}\n"
        f"{'enhanced':10s}{stats['pesq']:9.3f}{stats['stoi']:8.3f}\n"
        f"enhanced: noise attenuation in the pauses {stats['pause_att']:.1f} dB, "
        f"speech level {stats['speech_level']:+.1f} dB"
    )
    logger.info("\n" + table)
    return summary


def dnsmos_available(name="real"):
    """True if the ``speechmos`` package (DNSMOS) is installed; else warns."""
    try:
        import speechmos  # noqa: F401
    except ImportError:
        logger.warning(
            "DNSMOS of %s skipped: the speechmos package is not installed "
            "(pip install 'cmse-speechbrain[dnsmos]')",
            name,
        )
        return False
    return True


def score_without_reference(
    enhance, dataset, sample_rate, count=None, enhanced_folder=None
):
    """Enhances recordings without a clean reference and scores DNSMOS.

    Each recording is enhanced whole; DNSMOS P.835 SIG, BAK and OVRL of the
    noisy and of the enhanced signal are computed offline
    (:func:`cmse_speechbrain.metrics.dnsmos_scores`).

    Arguments
    ---------
    enhance : callable
        ``enhance(noisy)``: a 1-D waveform in, its enhanced 1-D waveform
        (on the CPU) out.
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        Items with ``id`` and ``noisy_sig`` (1-D, at ``sample_rate``).
    sample_rate : int
        Of the recordings.
    count : int, optional
        Score only the first ``count`` recordings.
    enhanced_folder : str or pathlib.Path, optional
        Where to write the enhanced recordings (``<id>.wav``).

    Returns
    -------
    list
        ``(id, noisy scores, enhanced scores)`` per recording; the scores
        are dicts with ``sig``, ``bak`` and ``ovrl``.
    """
    count = len(dataset) if count is None else min(count, len(dataset))
    rows = []
    for index in range(count):
        item = dataset[index]
        noisy = item["noisy_sig"]
        enhanced = enhance(noisy)
        if enhanced_folder:
            write_audio_atomic(
                pathlib.Path(enhanced_folder) / f"{item['id']}.wav",
                enhanced,
                sample_rate,
                scale_to_fit=True,
            )
        rows.append(
            (
                item["id"],
                dnsmos_scores(noisy.cpu(), sample_rate),
                dnsmos_scores(enhanced, sample_rate),
            )
        )
    return rows


def write_dnsmos_report(output_folder, name, rows, checkpoint_epoch):
    """Writes ``dnsmos_<name>.csv`` and ``dnsmos_<name>_summary.json``; logs a table.

    Arguments
    ---------
    output_folder : str or pathlib.Path
        Where the files go.
    name : str
        Names the recordings (``real``).
    rows : list
        As :func:`score_without_reference` returns them.
    checkpoint_epoch : int
        The epoch of the checkpoint that enhanced them.

    Returns
    -------
    dict
        The summary: number of recordings, mean noisy and enhanced scores.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> rows = [("r1", {"sig": 3.0, "bak": 2.0, "ovrl": 2.5},
    ...                {"sig": 3.5, "bak": 4.0, "ovrl": 3.0})]
    >>> summary = write_dnsmos_report(tmp, "real", rows, 2)
    >>> print((tmp / "dnsmos_real.csv").read_text(), end="")
    id,noisy_sig,noisy_bak,noisy_ovrl,enhanced_sig,enhanced_bak,enhanced_ovrl
    r1,3.0000,2.0000,2.5000,3.5000,4.0000,3.0000
    >>> summary["recordings"], summary["enhanced"]["bak"]
    (1, 4.0)
    """
    keys = DNSMOS_KEYS
    header = ["id"] + [f"{s}_{k}" for s in ("noisy", "enhanced") for k in keys]
    values = [
        [utt_id] + [noisy[k] for k in keys] + [enhanced[k] for k in keys]
        for utt_id, noisy, enhanced in rows
    ]
    output = pathlib.Path(output_folder)
    _write_text(output / f"dnsmos_{name}.csv", _csv_text(header, values))
    summary = {
        "recordings": len(rows),
        "noisy": {k: nanmean([r[1][k] for r in rows]) for k in keys},
        "enhanced": {k: nanmean([r[2][k] for r in rows]) for k in keys},
        "checkpoint_epoch": checkpoint_epoch,
    }
    _write_text(
        output / f"dnsmos_{name}_summary.json", json.dumps(summary, indent=2) + "\n"
    )
    table = [
        f"DNSMOS of {name} ({len(rows)} recordings, no reference)",
        f"{'':10s}" + "".join(f"{k.upper():>7s}" for k in keys),
    ]
    for which in ["noisy", "enhanced"]:
        table.append(
            f"{which:10s}" + "".join(f"{summary[which][k]:7.3f}" for k in keys)
        )
    logger.info("\n" + "\n".join(table))
    return summary


def plot_training_curves(rows, path):
    """Writes per-epoch curves to a PNG (atomically); False without matplotlib.

    One panel per quantity, the training and validation values in it, the
    noisy input's score (dashed) beside the enhanced one.

    Arguments
    ---------
    rows : list of dict
        ``epoch`` and ``<split>_<name>`` values per epoch
        (:attr:`cmse_speechbrain.checkpoints.TrainingHistory.rows`).
    path : str or pathlib.Path
        The PNG.

    Returns
    -------
    bool
        Whether the picture was written.

    Example
    -------
    >>> path = getfixture("tmp_path") / "curves.png"
    >>> rows = [
    ...     {"epoch": 1, "train_loss": 2.0, "valid_pesq": 1.5, "valid_noisy_pesq": 1.2},
    ...     {"epoch": 2, "train_loss": 1.0, "valid_pesq": 1.8, "valid_noisy_pesq": 1.2},
    ... ]
    >>> plot_training_curves(rows, path) == path.exists()
    True
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = sorted({k for row in rows for k in row if k != "epoch"})
    groups = {}  # one panel per quantity; the noisy input's score beside
    for key in keys:
        split, name = key.split("_", 1)
        label = split
        if name.startswith("noisy_"):
            name, label = name[len("noisy_") :], f"{split} (noisy input)"
        groups.setdefault(name, []).append((key, label))
    columns = min(4, len(groups))
    panel_rows = -(-len(groups) // columns)
    fig, axes = plt.subplots(
        panel_rows, columns, figsize=(4 * columns, 3 * panel_rows), squeeze=False
    )
    for ax in axes.flat[len(groups) :]:
        ax.axis("off")
    for ax, (name, series) in zip(axes.flat, sorted(groups.items())):
        for key, label in series:
            points = [(r["epoch"], r[key]) for r in rows if key in r]
            style = "--" if "noisy" in label else "-"
            ax.plot(*zip(*points), style, marker="o", label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    with atomic_output(path) as partial:
        fig.savefig(partial, dpi=80, format="png")
    plt.close(fig)
    return True
