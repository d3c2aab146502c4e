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


# Composite measures (Hu & Loizou, "Evaluation of objective quality measures
# for speech enhancement", IEEE TASLP 2008), as used in the VoiceBank-DEMAND
# literature: CSIG, CBAK and COVL combine PESQ with the log-likelihood ratio
# (LLR), the weighted spectral slope (WSS) and the segmental SNR (SSNR), all
# on 30 ms Hanning frames with a quarter-frame hop. This follows Loizou's
# MATLAB composite.m (and its common Python ports), with wide-band PESQ.

_CENTRE_FREQS = np.array(
    [
        50.0,
        120.0,
        190.0,
        260.0,
        330.0,
        400.0,
        470.0,
        540.0,
        617.372,
        703.378,
        798.717,
        904.128,
        1020.38,
        1148.30,
        1288.72,
        1442.54,
        1610.70,
        1794.16,
        1993.93,
        2211.08,
        2446.71,
        2701.97,
        2978.04,
        3276.17,
        3597.63,
    ]
)
_BANDWIDTHS = np.array(
    [
        70.0,
        70.0,
        70.0,
        70.0,
        70.0,
        70.0,
        70.0,
        77.3724,
        86.0056,
        95.3398,
        105.411,
        116.256,
        127.914,
        140.423,
        153.823,
        168.154,
        183.457,
        199.776,
        217.153,
        235.631,
        255.255,
        276.072,
        298.126,
        321.465,
        346.136,
    ]
)


def _frames(signal, sample_rate):
    length = int(round(30 * sample_rate / 1000))
    hop = length // 4
    count = int(len(signal) / hop - length / hop)
    index = np.arange(length)[None, :] + hop * np.arange(max(count, 0))[:, None]
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, length + 1) / (length + 1)))
    return signal[index] * window, signal[index], window


def segmental_snr(clean, enhanced, sample_rate=16000):
    """Segmental SNR in dB, frames clamped to [-10, 35] dB (Loizou).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> clean = rng.standard_normal(16000)
    >>> round(segmental_snr(clean, clean + 0.1 * rng.standard_normal(16000)), 1)
    20.0
    """
    _, clean_frames, window = _frames(np.asarray(clean, float), sample_rate)
    _, enh_frames, _ = _frames(np.asarray(enhanced, float), sample_rate)
    clean_frames, enh_frames = clean_frames * window, enh_frames * window
    signal = (clean_frames**2).sum(1)
    noise = ((clean_frames - enh_frames) ** 2).sum(1)
    eps = np.finfo(float).eps
    snr = 10 * np.log10(signal / (noise + eps) + eps)
    return float(np.clip(snr, -10, 35).mean())


def _lpc(frames, order):
    """Autocorrelation and LPC polynomials [1, -a] of each frame."""
    length = frames.shape[1]
    acf = np.stack(
        [(frames[:, : length - k] * frames[:, k:]).sum(1) for k in range(order + 1)], 1
    )
    polys = np.zeros((len(frames), order + 1))
    for f, r in enumerate(acf):
        a = np.zeros(order)
        energy = r[0]
        for i in range(order):
            if energy <= 0:
                break
            k = (r[i + 1] - np.dot(a[:i], r[i:0:-1])) / energy
            a[:i] = a[:i] - k * a[:i][::-1]
            a[i] = k
            energy *= 1 - k * k
        polys[f] = np.concatenate([[1.0], -a])
    return acf, polys


def frame_log_likelihood_ratios(clean, enhanced, sample_rate=16000):
    """LLR of each 30 ms frame (hop 7.5 ms): the enhanced frame's LPC envelope
    measured against the clean frame's (0 where they agree).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> clean = rng.standard_normal(16000)
    >>> llr = frame_log_likelihood_ratios(clean, 2 * clean)  # gain: no change
    >>> len(llr), float(np.abs(llr).max()) < 1e-9
    (129, True)
    >>> from scipy.signal import lfilter  # a low-pass tilt changes the envelope
    >>> tilted = lfilter([1], [1, -0.9], clean)
    >>> round(float(frame_log_likelihood_ratios(clean, tilted).mean()), 2)
    0.59
    """
    clean_frames, _, _ = _frames(np.asarray(clean, float), sample_rate)
    enh_frames, _, _ = _frames(np.asarray(enhanced, float), sample_rate)
    order = 10 if sample_rate < 10000 else 16
    clean_acf, clean_poly = _lpc(clean_frames, order)
    _, enh_poly = _lpc(enh_frames, order)
    values = []
    for r, a_clean, a_enh in zip(clean_acf, clean_poly, enh_poly):
        toeplitz = r[
            np.abs(np.arange(order + 1)[:, None] - np.arange(order + 1)[None, :])
        ]
        numerator = a_enh @ toeplitz @ a_enh
        denominator = a_clean @ toeplitz @ a_clean
        values.append(np.log(max(numerator, 1e-12) / max(denominator, 1e-12)))
    return np.asarray(values)


def log_likelihood_ratio(clean, enhanced, sample_rate=16000, alpha=0.95):
    """Mean LLR over the best ``alpha`` fraction of frames (Loizou)."""
    values = np.sort(frame_log_likelihood_ratios(clean, enhanced, sample_rate))
    return float(values[: int(round(len(values) * alpha))].mean())


def _critical_band_filters(n_fft, sample_rate):
    half = n_fft // 2
    bins = np.arange(half)
    f0 = _CENTRE_FREQS / (sample_rate / 2) * half
    bw = _BANDWIDTHS / (sample_rate / 2) * half
    norm = np.log(_BANDWIDTHS[0]) - np.log(_BANDWIDTHS)
    filters = np.exp(
        -11 * ((bins[None, :] - np.floor(f0)[:, None]) / bw[:, None]) ** 2
        + norm[:, None]
    )
    return filters * (filters > np.exp(-30 / (2 * 2.303)))


def _band_energies(frames, sample_rate):
    n_fft = int(2 ** np.ceil(np.log2(2 * frames.shape[1])))
    spectrum = np.abs(np.fft.fft(frames, n_fft, axis=1)[:, : n_fft // 2]) ** 2
    energies = spectrum @ _critical_band_filters(n_fft, sample_rate).T
    return 10 * np.log10(np.maximum(energies, 1e-10))


def _local_peaks(energy, slope):
    peaks = np.empty_like(slope)
    bands = len(slope)
    for i in range(bands):
        n = i
        if slope[i] > 0:
            while n < bands and slope[n] > 0:
                n += 1
            peaks[i] = energy[n - 1]
        else:
            while n >= 0 and slope[n] <= 0:
                n -= 1
            peaks[i] = energy[n + 1]
    return peaks


def weighted_spectral_slope(clean, enhanced, sample_rate=16000, alpha=0.95):
    """Mean WSS distance over the best ``alpha`` fraction of frames (Klatt)."""
    clean_energy = _band_energies(
        _frames(np.asarray(clean, float), sample_rate)[0], sample_rate
    )
    enh_energy = _band_energies(
        _frames(np.asarray(enhanced, float), sample_rate)[0], sample_rate
    )
    k_max, k_locmax = 20.0, 1.0
    distances = []
    for ce, ee in zip(clean_energy, enh_energy):
        cs, es = np.diff(ce), np.diff(ee)
        cp, ep = _local_peaks(ce, cs), _local_peaks(ee, es)
        w_clean = (
            k_max / (k_max + ce.max() - ce[:-1]) * k_locmax / (k_locmax + cp - ce[:-1])
        )
        w_enh = (
            k_max / (k_max + ee.max() - ee[:-1]) * k_locmax / (k_locmax + ep - ee[:-1])
        )
        weights = (w_clean + w_enh) / 2
        distances.append((weights * (cs - es) ** 2).sum() / weights.sum())
    distances = np.sort(np.asarray(distances))
    return float(distances[: int(round(len(distances) * alpha))].mean())


def composite_scores(clean, enhanced, sample_rate=16000, pesq_score=None):
    """CSIG, CBAK, COVL (clipped to [1, 5]) with the SSNR, LLR and WSS.

    Arguments
    ---------
    clean, enhanced : array-like
        1-D signals at ``sample_rate`` (8 or 16 kHz, as PESQ needs).
    sample_rate : int
        Sampling rate.
    pesq_score : float, optional
        Wide-band PESQ if already computed.

    Returns
    -------
    dict
        ``csig``, ``cbak``, ``covl``, ``ssnr``, ``llr``, ``wss``, ``pesq``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(32000) / 16000
    >>> clean = np.sin(2 * np.pi * 200 * t) * np.sin(2 * np.pi * 2 * t)
    >>> scores = composite_scores(clean, clean)
    >>> scores["csig"] >= 4.5 and scores["llr"] < 1e-6 and scores["wss"] < 1e-6
    True
    """
    import torch

    clean = np.asarray(clean, float)
    enhanced = np.asarray(enhanced, float)
    if pesq_score is None:
        pesq_score = pesq_wb(
            torch.from_numpy(enhanced), torch.from_numpy(clean), sample_rate
        )
    llr = log_likelihood_ratio(clean, enhanced, sample_rate)
    wss = weighted_spectral_slope(clean, enhanced, sample_rate)
    ssnr = segmental_snr(clean, enhanced, sample_rate)
    clip = lambda x: float(min(max(x, 1.0), 5.0))  # noqa: E731
    return {
        "csig": clip(3.093 - 1.029 * llr + 0.603 * pesq_score - 0.009 * wss),
        "cbak": clip(1.634 + 0.478 * pesq_score - 0.007 * wss + 0.063 * ssnr),
        "covl": clip(1.594 + 0.805 * pesq_score - 0.512 * llr - 0.007 * wss),
        "ssnr": ssnr,
        "llr": llr,
        "wss": wss,
        "pesq": pesq_score,
    }


def si_sdr(clean, enhanced):
    """Scale-invariant SDR in dB (Le Roux et al., 2019).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> clean = rng.standard_normal(16000)
    >>> round(si_sdr(clean, 3 * clean + 0.3 * rng.standard_normal(16000)), 1)
    20.0
    """
    clean = np.asarray(clean, float) - np.mean(clean)
    enhanced = np.asarray(enhanced, float) - np.mean(enhanced)
    target = np.dot(enhanced, clean) / (np.dot(clean, clean) + 1e-12) * clean
    residual = enhanced - target
    return float(
        10 * np.log10((target**2).sum() / ((residual**2).sum() + 1e-12) + 1e-12)
    )


def _frame_powers(signal, frame, hop):
    """Mean power of each ``frame``-sample frame, ``hop`` apart (rectangular)."""
    signal = np.asarray(signal, dtype=float)
    if signal.size < frame:
        return np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(signal, frame)[::hop]
    return (frames**2).mean(axis=1)


def pause_attenuation(
    enhanced,
    noisy,
    clean,
    sample_rate=16000,
    frame_ms=32.0,
    hop_ms=16.0,
    pause_db=40.0,
    speech_db=20.0,
):
    """Noise removed in the speech pauses and the change of the speech level, in dB.

    The clean reference decides which frames are which: a frame is a
    *pause* when its clean power is at least ``pause_db`` below the loudest
    clean frame, and *speech* when it is within ``speech_db`` of it.

    * ``pause_attenuation_db`` = 10 log10(noisy power / enhanced power) over
      the pause frames: how much of the background between words is taken
      out (0 for the noisy input itself; larger is better).
    * ``speech_level_db`` = 10 log10(enhanced power / clean power) over the
      speech frames: 0 when the speech keeps its level, negative when it is
      attenuated with the noise (the residual noise adds a little at low SNR).

    Arguments
    ---------
    enhanced, noisy, clean : array-like or torch.Tensor
        Time-aligned 1-D waveforms (the shortest length is used).
    sample_rate : int
        Their rate.
    frame_ms, hop_ms : float
        Analysis frames (rectangular).
    pause_db, speech_db : float
        The thresholds below the loudest clean frame.

    Returns
    -------
    dict
        ``pause_attenuation_db`` and ``speech_level_db``; NaN where a file has
        no pause (or no speech) frame.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(32000) / 16000
    >>> # 1 s speech, 1 s pause
    >>> clean = np.where(t < 1.0, np.sin(2 * np.pi * 200 * t), 0.0)
    >>> noise = 0.05 * rng.standard_normal(t.size)
    >>> scores = pause_attenuation(clean + 0.1 * noise, clean + noise, clean)
    >>> round(scores["pause_attenuation_db"], 1), round(scores["speech_level_db"], 1)
    (20.0, 0.0)
    >>> pause_attenuation(clean + noise, clean + noise, clean)["pause_attenuation_db"]
    0.0
    >>> attenuated = pause_attenuation(0.5 * clean, clean + noise, clean)
    >>> round(attenuated["speech_level_db"], 1)
    -6.0
    """
    signals = []
    for signal in (enhanced, noisy, clean):
        if hasattr(signal, "detach"):
            signal = signal.detach().cpu().double().numpy()
        signals.append(np.asarray(signal, dtype=float).reshape(-1))
    length = min(s.size for s in signals)
    frame = max(1, int(round(frame_ms * sample_rate / 1000)))
    hop = max(1, int(round(hop_ms * sample_rate / 1000)))
    enhanced_p, noisy_p, clean_p = (
        _frame_powers(s[:length], frame, hop) for s in signals
    )
    result = {"pause_attenuation_db": math.nan, "speech_level_db": math.nan}
    if clean_p.size == 0 or clean_p.max() <= 0:
        return result
    relative_db = 10 * np.log10(np.maximum(clean_p, 1e-30) / clean_p.max())
    pauses, speech = relative_db <= -pause_db, relative_db >= -speech_db
    tiny = 1e-20
    if pauses.any() and noisy_p[pauses].sum() > tiny:
        result["pause_attenuation_db"] = float(
            10 * np.log10(noisy_p[pauses].sum() / max(enhanced_p[pauses].sum(), tiny))
        )
    if speech.any():
        result["speech_level_db"] = float(
            10 * np.log10(max(enhanced_p[speech].sum(), tiny) / clean_p[speech].sum())
        )
    return result


def dnsmos_scores(signal, sample_rate=16000):
    """Non-intrusive DNSMOS P.835 scores: ``sig``, ``bak``, ``ovrl``.

    Uses the DNSMOS ONNX models that the ``speechmos`` package ships (no
    download; install with the ``dnsmos`` extra: speechmos, onnxruntime,
    librosa). The signal is resampled to 16 kHz by speechmos if needed.

    Arguments
    ---------
    signal : torch.Tensor or numpy.ndarray
        1-D waveform.
    sample_rate : int
        Its rate.

    Returns
    -------
    dict
    """
    try:
        from speechmos import dnsmos
    except ImportError as error:
        raise ImportError(
            "DNSMOS needs the optional extra: pip install 'cmse-speechbrain[dnsmos]'"
        ) from error
    if hasattr(signal, "detach"):
        signal = signal.detach().cpu().numpy()
    signal = np.asarray(signal, dtype=np.float32)
    peak = np.abs(signal).max()
    if peak > 1.0:
        signal = signal / peak
    result = dnsmos.run(signal, sample_rate)
    return {
        "sig": float(result["sig_mos"]),
        "bak": float(result["bak_mos"]),
        "ovrl": float(result["ovrl_mos"]),
    }
