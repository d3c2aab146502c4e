"""Scoring an enhanced file against its reference: the metrics every
command-line tool and benchmark reports.

It sits below :mod:`cmse_speechbrain.cli` and :mod:`cmse_speechbrain.report`
(both use it; it uses neither).

Authors
 * cmse-speechbrain contributors 2026
"""

import math  # noqa: F401 (used by the doctest)
import pathlib

import torch  # noqa: F401 (used by the doctest)

from cmse_speechbrain.corpus import INPUT_EXTENSIONS
from cmse_speechbrain.dataio import TEMPORARY_PREFIX
from cmse_speechbrain.metrics import (
    composite_scores,
    pause_attenuation,
    si_sdr,
    stoi_score,
)

#: Largest length difference (samples at 16 kHz) between an enhanced file
#: and its reference that ``cmse-evaluate`` still scores (over the shorter).
LENGTH_TOLERANCE = 8

METRICS = ["pesq", "stoi", "estoi", "csig", "cbak", "covl", "ssnr", "si_sdr"]
#: The residual-noise metrics (:func:`cmse_speechbrain.metrics.pause_attenuation`),
#: which need the noisy input beside the clean reference.
PAUSE_METRICS = ["pause_attenuation_db", "speech_level_db"]


def score_pair(reference, signal, sample_rate=16000, noisy=None):
    """All intrusive metrics of ``signal`` against ``reference`` (tensors).

    With the (time-aligned) ``noisy`` input, also :data:`PAUSE_METRICS`.

    Example
    -------
    >>> t = torch.arange(32000) / 16000
    >>> clean = torch.where(t < 1, torch.sin(2 * math.pi * 200 * t), torch.zeros(()))
    >>> noisy = clean + 0.05 * torch.randn(
    ...     t.numel(), generator=torch.Generator().manual_seed(0)
    ... )
    >>> scores = score_pair(clean, clean + 0.1 * (noisy - clean), noisy=noisy)
    >>> (list(scores) == METRICS + PAUSE_METRICS,
    ...  round(scores["pause_attenuation_db"], 1))
    (True, 20.0)
    """
    n = min(reference.numel(), signal.numel())
    reference, signal = reference[:n], signal[:n]
    scores = composite_scores(
        reference.double().numpy(), signal.double().numpy(), sample_rate
    )
    scores["stoi"] = stoi_score(signal, reference, sample_rate)
    scores["estoi"] = stoi_score(signal, reference, sample_rate, extended=True)
    scores["si_sdr"] = si_sdr(reference.numpy(), signal.numpy())
    keys = METRICS
    if noisy is not None:
        scores.update(pause_attenuation(signal, noisy, reference, sample_rate))
        keys = METRICS + PAUSE_METRICS
    return {k: scores[k] for k in keys}


def by_stem(folder):
    """The audio files under ``folder`` by file stem (partial outputs
    skipped); two files with one stem are refused."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder")
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in INPUT_EXTENSIONS or path.name.startswith(
            TEMPORARY_PREFIX
        ):
            continue
        if path.stem in files:
            raise SystemExit(
                f"{path}: same name as {files[path.stem]}; files are matched by name"
            )
        files[path.stem] = path
    return files
