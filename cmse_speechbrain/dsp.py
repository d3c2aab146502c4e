"""Signal helpers shared by the model, the losses and inference.

The STFT pair the model and its losses use, the power-law compressed
spectrum, length fitting, resampling for any pair of rates, and the
cross-fade of overlapping chunks.

Authors
 * cmse-speechbrain contributors 2026
"""

import functools
import math

import torch
import torchaudio.functional as AF
from speechbrain.processing.features import ISTFT, STFT


def stft_pair(sample_rate, n_fft, hop_length):
    """SpeechBrain STFT and ISTFT with a Hamming window of ``n_fft`` samples
    and a hop of ``hop_length`` samples (SpeechBrain counts in ms).

    Example
    -------
    >>> stft, istft = stft_pair(16000, 512, 256)
    >>> wav = torch.rand(1, 4000)
    >>> torch.allclose(istft(stft(wav), sig_length=4000), wav, atol=1e-4)
    True
    """
    win_ms = 1000.0 * n_fft / sample_rate
    hop_ms = 1000.0 * hop_length / sample_rate
    stft = STFT(
        sample_rate,
        win_length=win_ms,
        hop_length=hop_ms,
        n_fft=n_fft,
        window_fn=torch.hamming_window,
    )
    istft = ISTFT(
        sample_rate,
        n_fft=n_fft,
        win_length=win_ms,
        hop_length=hop_ms,
        window_fn=torch.hamming_window,
    )
    return stft, istft


def compressed_spectrum(spec, compression, dim=-1, eps=1e-10):
    """Power-law compressed magnitude and complex spectrum.

    Arguments
    ---------
    spec : torch.Tensor
        A spectrum whose dimension ``dim`` holds (real, imaginary), e.g.
        SpeechBrain's STFT output [B, T, F, 2] (``dim=-1``).
    compression : float
        Exponent c: returns ``|X|^c`` (without the dimension ``dim``) and
        ``|X|^c e^{j angle X}`` (the shape of ``spec``).
    dim : int
        The (real, imaginary) dimension.
    eps : float
        Added to the power under the square root.

    Example
    -------
    >>> spec = torch.tensor([[[[3.0, 4.0]]]])
    >>> magnitude, complex_spec = compressed_spectrum(spec, 0.5)
    >>> round(float(magnitude), 3), [round(float(v), 3) for v in complex_spec.flatten()]
    (2.236, [1.342, 1.789])
    """
    magnitude = torch.sqrt(spec.pow(2).sum(dim) + eps)
    compressed = magnitude.pow(compression)
    return compressed, spec * (compressed / magnitude).unsqueeze(dim)


def fit_length(signal, length):
    """Crops or zero-pads the last dimension to exactly ``length`` samples.

    Example
    -------
    >>> fit_length(torch.ones(5), 3).tolist(), fit_length(torch.ones(2), 3).tolist()
    ([1.0, 1.0, 1.0], [1.0, 1.0, 0.0])
    """
    if signal.shape[-1] >= length:
        return signal[..., :length]
    return torch.nn.functional.pad(signal, (0, length - signal.shape[-1]))


def resample(signal, orig_rate, new_rate):
    """Resamples [..., samples] between two rates, fast for any pair.

    torchaudio's windowed-sinc resampler, as the data pipeline uses, when
    the reduced ratio is small (8, 16, 22.05, 44.1, 48 kHz ...); for a
    ratio such as 16000/7999 its kernel has 16,000 phases (seconds per
    file), so SciPy's polyphase filter is used instead.

    Example
    -------
    >>> resample(torch.zeros(7999), 7999, 16000).shape
    torch.Size([16000])
    >>> resample(torch.zeros(44100), 44100, 16000).shape
    torch.Size([16000])
    """
    if orig_rate == new_rate:
        return signal
    divisor = math.gcd(orig_rate, new_rate)
    up, down = new_rate // divisor, orig_rate // divisor
    if max(up, down) <= 1000:
        return AF.resample(signal, orig_rate, new_rate)
    from scipy.signal import resample_poly  # a SpeechBrain dependency

    out = resample_poly(
        signal.detach().cpu().double().numpy(),
        up,
        down,
        axis=-1,
        window=_lowpass(max(up, down)),
    )
    return torch.from_numpy(out).to(signal.dtype)


@functools.lru_cache(maxsize=4)
def _lowpass(max_rate):
    """The filter ``resample_poly`` designs for a ratio (kept: designing its
    2 * 10 * max_rate + 1 taps costs more than filtering a block)."""
    from scipy.signal import firwin

    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def resample_ratio(orig_rate, new_rate):
    """The reduced ratio and whether :func:`resample` uses SciPy for it."""
    divisor = math.gcd(orig_rate, new_rate)
    up, down = new_rate // divisor, orig_rate // divisor
    return up, down, max(up, down) > 1000


def resampled_length(samples, orig_rate, new_rate):
    """How many samples :func:`resample` gives for ``samples`` samples.

    Example
    -------
    >>> [
    ...     resampled_length(n, 44100, 16000)
    ...     == resample(torch.zeros(n), 44100, 16000).numel()
    ...     for n in (1, 441, 100001)
    ... ]
    [True, True, True]
    >>> resampled_length(7999, 7999, 16000)
    16000
    """
    if orig_rate == new_rate:
        return samples
    up, down, scipy = resample_ratio(orig_rate, new_rate)
    if scipy:  # resample_poly: exactly the ceiling
        return samples * up // down + bool(samples * up % down)
    return math.ceil(up * samples / down)  # as torchaudio computes it


def chunk_starts(length, chunk, overlap):
    """The start of each chunk of a ``length``-sample signal.

    Example
    -------
    >>> chunk_starts(10, 6, 2)
    [0, 4]
    """
    return list(range(0, length - overlap, chunk - overlap))


def chunk_weight(index, starts, length, chunk, overlap, device=None):
    """The cross-fade weight of chunk ``index`` (see :func:`chunk_weights`).

    Example
    -------
    >>> chunk_weight(1, [0, 4], 10, chunk=6, overlap=2).tolist()
    [0.25, 0.75, 1.0, 1.0, 1.0, 1.0]
    """
    ramp = (torch.arange(overlap, device=device) + 0.5) / overlap
    size = min(chunk, length - starts[index])
    weight = torch.ones(size, device=device)
    if index > 0:
        weight[:overlap] = ramp[: min(overlap, size)]
    if index < len(starts) - 1:
        weight[-overlap:] = 1 - ramp
    return weight


def chunk_weights(length, starts, chunk, overlap, device=None):
    """Cross-fade weights of overlapping chunks (they sum to one).

    Each chunk gets a linear ramp over ``overlap`` samples at each end that
    touches another chunk, and flat weight elsewhere.

    Arguments
    ---------
    length : int
        Signal length.
    starts : list of int
        Chunk start samples.
    chunk : int
        Chunk length.
    overlap : int
        Overlap between neighbouring chunks.
    device : torch.device, optional
        Device of the weights.

    Returns
    -------
    list of torch.Tensor
        One weight vector per chunk.

    Example
    -------
    >>> w = chunk_weights(10, [0, 4], chunk=6, overlap=2)
    >>> total = torch.zeros(10)
    >>> total[0:6] += w[0]; total[4:10] += w[1]
    >>> torch.allclose(total, torch.ones(10))
    True
    """
    return [
        chunk_weight(index, starts, length, chunk, overlap, device)
        for index in range(len(starts))
    ]
