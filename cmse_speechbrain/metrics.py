"""Per-utterance quality metrics for SpeechBrain's MetricStats.

Each function takes one enhanced and one reference waveform (1-D tensors,
as ``MetricStats(..., batch_eval=False)`` passes them) and returns a float.
They never raise on a bad utterance (MetricStats would retry forever): an
utterance PESQ cannot score (e.g. no speech found) gets NaN, and
:func:`nanmean` leaves it out of the average.

Authors
 * cmse-speechbrain contributors 2026
"""

import math

import numpy as np
from pesq import PesqError, pesq
from pystoi import stoi


def pesq_wb(predict, target, sample_rate=16000):
    """Wide-band PESQ (ITU-T P.862.2) of ``predict`` against ``target``.

    Example
    -------
    >>> import torch
    >>> t = torch.arange(16000) / 16000.0
    >>> speechlike = torch.sin(2 * math.pi * 220 * t) * torch.sin(2 * math.pi * 3 * t)
    >>> round(pesq_wb(speechlike, speechlike), 2)
    4.64
    """
    ref = target.detach().cpu().double().numpy()
    deg = predict.detach().cpu().double().numpy()
    try:
        return float(pesq(sample_rate, ref, deg, "wb"))
    except (PesqError, ValueError):
        return math.nan


def stoi_score(predict, target, sample_rate=16000, extended=False):
    """STOI (or ESTOI with ``extended=True``) of ``predict`` against ``target``.

    Example
    -------
    >>> import torch
    >>> clean = torch.randn(16000)
    >>> round(stoi_score(clean, clean), 3)
    1.0
    """
    ref = target.detach().cpu().double().numpy()
    deg = predict.detach().cpu().double().numpy()
    try:
        return float(stoi(ref, deg, sample_rate, extended=extended))
    except ValueError:
        return math.nan


def nanmean(scores):
    """Mean of the finite scores (NaN if there is none).

    Example
    -------
    >>> nanmean([1.0, float("nan"), 3.0])
    2.0
    """
    values = np.asarray([float(s) for s in scores], dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan
