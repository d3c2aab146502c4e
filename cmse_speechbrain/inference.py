"""Inference interface: a trained CMCR-Net as a SpeechBrain ``Pretrained``.

Example (a folder with ``hyperparams.yaml`` and ``enhance_model.ckpt``)::

    from cmse_speechbrain.inference import EnhanceCMCR
    enhancer = EnhanceCMCR.from_hparams(source="path/to/model_folder")
    enhanced = enhancer.enhance_file("noisy.wav", output_filename="enhanced.wav")

Any input rate is resampled to the model's and the output is returned (and
written) at the input's rate and with exactly the input's number of
samples; several channels are mixed down (or refused with
``mix_down=False``). Long signals are enhanced in overlapping chunks joined
by cross-fades. ``enhance_file`` and ``enhance_batch`` hold the whole signal
in memory (a few copies of it); ``enhance_to_file`` (what ``cmse-enhance``
uses for a file longer than a chunk) goes disk to disk, one chunk in memory
at a time, so its memory does not grow with the file's length::

    enhancer.enhance_to_file("three_hours.flac", "enhanced.wav")

A model folder is loaded without running code from it
(:mod:`cmse_speechbrain.safe_yaml`): its YAML may only build this package's
networks and the SpeechBrain classes inference needs, and its weights are
read with ``torch.load(weights_only=True)``. ``trust_code=True`` loads any
SpeechBrain YAML, with a warning.

Authors
 * cmse-speechbrain contributors 2026
"""

import contextlib
import logging
import math
import os
import pathlib

import soundfile as sf
import torch
from speechbrain.inference.interfaces import Pretrained

from cmse_speechbrain.dataio import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    AudioBlocks,
    AudioFileError,
    atomic_output,
    audio_info,
    read_audio_checked,
    scratch_file,
)
from cmse_speechbrain.dsp import (
    chunk_starts,
    chunk_weight,
    fit_length,
    resample,
    resample_ratio,
    resampled_length,
)
from cmse_speechbrain.safe_yaml import (
    UNSAFE_LOAD_ERRORS,
    check_weights_loaded,
    describe_load_error,
    load_pretrained,
    random_weights_error,
)

logger = logging.getLogger(__name__)


def shipped_model_folder():
    """The trained model folder shipped inside the package (see its README).

    Example
    -------
    >>> (shipped_model_folder() / "hyperparams.yaml").is_file()
    True
    """
    return pathlib.Path(__file__).resolve().parent / "pretrained" / "cmcr-net-real-mix"


def check_device(device):
    """Refuses a device this machine does not have, in plain words.

    Arguments
    ---------
    device : str
        ``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...

    Raises
    ------
    RuntimeError
        E.g. "CUDA is not available".

    Example
    -------
    >>> check_device("cpu")
    >>> check_device("abacus")
    Traceback (most recent call last):
     ...
    RuntimeError: 'abacus' is not a device (cpu, cuda, cuda:1, ...)
    """
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise RuntimeError(
            f"{device!r} is not a device (cpu, cuda, cuda:1, ...)"
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"CUDA is not available (device {device!r})")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise RuntimeError(
                f"there is no CUDA device {parsed.index} ({count} found)"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"MPS is not available (device {device!r})")


class ResampledReader:
    """Any part of a resampled signal, computed from the part of the
    original around it: a signal of any length is resampled block by block.

    A block is resampled from the input samples it needs plus a margin
    longer than the filter (and aligned to the ratio's period), then
    cropped; so every block equals the same samples of :func:`resample` on
    the whole signal, to float rounding.

    Arguments
    ---------
    read : callable
        ``read(start, stop)``: samples ``[start, stop)`` of the original,
        a [samples] tensor (clipped to the signal).
    length : int
        Samples of the original.
    orig_rate, new_rate : int
        Its rate and the rate wanted.

    Example
    -------
    >>> signal = torch.randn(50000, generator=torch.Generator().manual_seed(0))
    >>> reader = ResampledReader(lambda a, b: signal[a:b], signal.numel(), 44100, 16000)
    >>> whole = resample(signal, 44100, 16000)
    >>> (len(reader) == whole.numel(),
    ...  torch.allclose(reader.read(5000, 9000), whole[5000:9000], atol=1e-6))
    (True, True)
    """

    def __init__(self, read, length, orig_rate, new_rate):
        self._read, self.length = read, length
        self.orig_rate, self.new_rate = orig_rate, new_rate
        self.up, self.down, scipy = resample_ratio(orig_rate, new_rate)
        # the filter reaches 6.1 * max(1, down/up) + down input samples away
        # (torchaudio), 10 * max(1, down/up) (SciPy): a margin above that, in
        # whole periods of the ratio
        need = 12 * max(1.0, self.down / self.up) + 2 + (0 if scipy else self.down)
        self.margin = self.down * math.ceil(need / self.down)

    def __len__(self):
        return resampled_length(self.length, self.orig_rate, self.new_rate)

    def read(self, start, stop):
        """Samples ``[start, stop)`` of the resampled signal (clipped to it)."""
        start, stop = max(0, start), min(stop, len(self))
        if self.orig_rate == self.new_rate or stop <= start:
            return self._read(start, stop)
        first = (
            start // self.up
        ) * self.down - self.margin  # whole periods: same phases
        first = max(0, first)
        last = min(self.length, -(-stop // self.up) * self.down + self.margin)
        out = resample(self._read(first, last), self.orig_rate, self.new_rate)
        offset = first // self.down * self.up  # the output sample out[0] is
        return out[start - offset : stop - offset]


class FileSignal:
    """A file as a mono signal at ``sample_rate`` that is sliced like a
    tensor (``signal[a:b]``, ``len(signal)``) but only reads, and resamples,
    the part asked for (:class:`~cmse_speechbrain.dataio.AudioBlocks`,
    :class:`ResampledReader`).

    Arguments
    ---------
    path : str or pathlib.Path
        The audio file.
    sample_rate : int
        The rate of the samples it gives.

    Example
    -------
    >>> import numpy as np
    >>> tmp = getfixture("tmp_path")
    >>> sf.write(tmp / "a.wav", np.zeros((48000, 2)), 48000)
    >>> with FileSignal(tmp / "a.wav", 16000) as signal:
    ...     len(signal), signal[100:300].shape, signal.info.samplerate
    (16000, torch.Size([200]), 48000)
    """

    def __init__(self, path, sample_rate):
        self.blocks = AudioBlocks(path)
        self.info = self.blocks  # frames, samplerate, channels
        self.reader = ResampledReader(
            self.blocks.read, self.blocks.frames, self.blocks.samplerate, sample_rate
        )

    def __len__(self):
        return len(self.reader)

    def __getitem__(self, index):
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("FileSignal takes slices signal[start:stop] only")
        start, stop, _ = index.indices(len(self))
        return self.reader.read(start, stop)

    def close(self):
        """Closes the file."""
        self.blocks.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _FloatFile:
    """A float32 scratch file of samples, written in order, read in parts."""

    def __init__(self, path):
        self.path, self.length = path, 0
        self._file = open(path, "w+b")

    def append(self, samples):
        self._file.seek(0, os.SEEK_END)
        samples.detach().cpu().float().numpy().tofile(self._file)
        self.length += samples.numel()

    def read(self, start, stop):
        import numpy as np

        start, stop = max(0, start), min(stop, self.length)
        if stop <= start:
            return torch.zeros(0)
        self._file.seek(4 * start)
        return torch.from_numpy(
            np.fromfile(self._file, dtype=np.float32, count=stop - start)
        )

    def close(self):
        self._file.close()


def check_output_name(path):
    """Refuses an output name that cannot hold 16-bit PCM audio (no
    extension, ``.mp3``, a folder), naming it.

    Example
    -------
    >>> check_output_name("out/x.flac").name
    'x.flac'
    >>> check_output_name("out/x.mp3")
    Traceback (most recent call last):
     ...
    ValueError: out/x.mp3: cannot write 16-bit PCM audio as .mp3; use .wav or .flac
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(
            f"{path}: is a folder; give a file name such as {path / 'enhanced.wav'}"
        )
    extension = path.suffix.lower()
    if not extension:
        raise ValueError(f"{path}: no extension, so no audio format; use .wav or .flac")
    audio_format = {".aif": "AIFF", ".aifc": "AIFF"}.get(
        extension, extension[1:].upper()
    )
    if audio_format not in sf.available_formats() or not sf.check_format(
        audio_format, "PCM_16"
    ):
        raise ValueError(
            f"{path}: cannot write 16-bit PCM audio as {extension}; use .wav or .flac"
        )
    return path


def frozen_network(folder):
    """The network of a model folder, frozen (no gradient, eval mode), for
    use inside another model's training (curricular CR's baseline).

    Arguments
    ---------
    folder : str, pathlib.Path or None
        A model folder as ``cmse-export`` writes it, loaded safely
        (:meth:`EnhanceCMCR.from_hparams`); None gives None.

    Returns
    -------
    torch.nn.Module or None

    Example
    -------
    >>> model = frozen_network(shipped_model_folder())
    >>> model.training, any(p.requires_grad for p in model.parameters())
    (False, False)
    >>> frozen_network(None) is None
    True
    """
    if folder is None:
        return None
    model = EnhanceCMCR.from_hparams(source=str(folder)).mods.enhance_model
    model.requires_grad_(False)
    return model.eval()


class EnhanceCMCR(Pretrained):
    """Enhances speech with a trained CMCR-Net.

    The hyperparameter file needs ``enhance_model`` (in ``modules``),
    ``sample_rate`` and a ``pretrainer`` that loads ``enhance_model``;
    optional ``chunk_seconds`` (default 10) and ``chunk_overlap_seconds``
    (default 1).

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2)
    >>> enhancer = EnhanceCMCR(
    ...     modules={"enhance_model": model},
    ...     hparams={"sample_rate": 16000, "chunk_seconds": 1.0,
    ...              "chunk_overlap_seconds": 0.25},
    ... )
    >>> noisy = torch.rand(2, 40000) - 0.5
    >>> enhancer.enhance_batch(noisy).shape
    torch.Size([2, 40000])
    """

    MODULES_NEEDED = ["enhance_model"]
    HPARAMS_NEEDED = ["sample_rate"]

    #: ``from_hparams`` arguments of SpeechBrain's that a local folder does not
    #: need: accepted and ignored (nothing is fetched, no hub, no code file).
    FETCH_ARGUMENTS = (
        "huggingface_cache_dir",
        "revision",
        "use_auth_token",
        "pymodule_file",
        "local_strategy",
        "fetch_config",
    )

    @classmethod
    def from_hparams(
        cls,
        source,
        hparams_file="hyperparams.yaml",
        savedir=None,
        trust_code=False,
        download_only=False,
        **kwargs,
    ):
        """Loads a local model folder (never a hub lookup), without running
        code from it.

        Arguments
        ---------
        source : str or pathlib.Path
            The model folder (``hyperparams.yaml``, ``enhance_model.ckpt``).
        hparams_file : str
            Its YAML file.
        savedir : str, optional
            With ``trust_code`` only: where SpeechBrain collects the files
            (default: the folder itself, in place). Safe loading always
            reads them in place.
        trust_code : bool
            Load any SpeechBrain YAML, which may run any code (a warning
            says so). Without it the YAML is checked against an allowlist
            first (:mod:`cmse_speechbrain.safe_yaml`).
        download_only : bool
            As in SpeechBrain: only make the files available (a local
            folder already is): returns None after checking it exists.
        **kwargs
            ``overrides``, ``run_opts``, ``freeze_params``; SpeechBrain's
            fetching arguments (:data:`FETCH_ARGUMENTS`: ``revision``,
            ``huggingface_cache_dir``, ``use_auth_token``, ``pymodule_file``
            ...) are accepted and ignored: the folder is local, nothing is
            fetched, and no Python file of it is ever imported.

        Returns
        -------
        EnhanceCMCR
        """
        folder = pathlib.Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"{source}: no such model folder")
        for name in cls.FETCH_ARGUMENTS:
            kwargs.pop(name, None)
        if download_only:
            return None
        run_opts = dict(kwargs.get("run_opts") or {})
        check_device(run_opts.get("device") or "cpu")
        if run_opts.get("device") == "cuda":  # SpeechBrain wants an index
            kwargs["run_opts"] = {**run_opts, "device": "cuda:0"}
        if trust_code:
            kwargs["savedir"] = str(savedir or folder)
        try:
            enhancer = load_pretrained(
                cls, folder, hparams_file=hparams_file, trust_code=trust_code, **kwargs
            )
        except FileNotFoundError:
            raise
        except UNSAFE_LOAD_ERRORS as error:
            if not trust_code:
                raise  # safe loading names the file itself
            if isinstance(error, KeyError) and error.args == ("pretrainer",):
                raise random_weights_error(
                    folder / hparams_file, ["enhance_model"]
                ) from None
            raise ValueError(
                f"{folder}: a checkpoint in this model folder cannot be loaded safely "
                f"({describe_load_error(error)})"
            ) from None
        if trust_code:  # safe loading checks it itself
            check_weights_loaded(
                enhancer.mods,
                getattr(enhancer.hparams, "pretrainer", None),
                folder / hparams_file,
            )
        try:
            enhancer.check_settings()
        except ValueError as error:
            raise ValueError(f"{folder / hparams_file}: {error}") from None
        return enhancer

    def check_settings(self):
        """Refuses settings that would fail every file or mislead: the rate
        and the shortest input must be whole numbers in range, the model's
        rate the folder's, the chunking valid (:meth:`chunking`).

        Raises
        ------
        ValueError
            Naming the key and its value.
        """
        from cmse_speechbrain.cmcr_net import CMCRNet, check_whole

        check_whole(
            "sample_rate", self.hparams.sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE
        )
        check_whole(
            "min_audio_samples",
            getattr(self.hparams, "min_audio_samples", 1),
            1,
            10 * self.hparams.sample_rate,
        )
        model = self.mods.enhance_model
        if (
            isinstance(model, CMCRNet)
            and model.config["sample_rate"] != self.sample_rate
        ):
            raise ValueError(
                f"sample_rate {self.sample_rate} is not the rate of enhance_model "
                f"({model.config['sample_rate']})"
            )
        self.chunking()

    @property
    def sample_rate(self):
        """The model's sampling rate."""
        return self.hparams.sample_rate

    def chunking(self):
        """The chunk length and overlap, in samples at the model's rate.

        ``chunk_seconds`` 0 or None enhances signals whole (no memory
        bound). A chunk must hold at least twice ``min_audio_samples``;
        the overlap (``chunk_overlap_seconds``) is kept between
        ``min_audio_samples`` and half a chunk.

        Returns
        -------
        (int, int)
            Chunk and overlap; (0, 0) for whole signals.

        Raises
        ------
        ValueError
            A chunk length that is not a finite positive number, or too short.
        """
        seconds = getattr(self.hparams, "chunk_seconds", 10.0)
        overlap_seconds = getattr(self.hparams, "chunk_overlap_seconds", 1.0)
        if seconds is None or seconds == 0:
            return 0, 0
        for name, value in [
            ("chunk_seconds", seconds),
            ("chunk_overlap_seconds", overlap_seconds),
        ]:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"{name} must be a finite positive number of seconds, got {value}"
                )
        shortest = int(getattr(self.hparams, "min_audio_samples", 1))
        chunk = round(seconds * self.sample_rate)
        if chunk < 2 * shortest:
            raise ValueError(
                f"chunk_seconds {seconds:g} is too short: a chunk needs at least "
                f"{2 * shortest / self.sample_rate:g} s ({2 * shortest} samples)"
            )
        overlap = round(overlap_seconds * self.sample_rate)
        return chunk, min(max(overlap, shortest), chunk // 2)

    def _enhance(self, wavs, lengths):
        enhanced, _ = self.mods.enhance_model(wavs, lengths)
        return enhanced

    def batch_key(self, samples):
        """Signals with the same key can be enhanced in one zero-padded batch.

        A signal longer than the model's chunk gets None (enhanced alone,
        in chunks). For CMCR-Net the key is the number of STFT frames
        (``samples // hop_length``): the STFT pads with zeros past the end,
        so zero-padding a signal to the longest of its batch leaves every
        one of its frames, hence its output, unchanged (only float rounding
        differs). Padding into one more frame would change it: the level
        normalisation and the attention see every frame (measured: 20-50 dB
        SNR). Other models: the exact length.

        Example
        -------
        >>> from cmse_speechbrain.cmcr_net import CMCRNet
        >>> net = CMCRNet(channels=[4, 8], d_model=8, nhead=2)
        >>> enhancer = EnhanceCMCR(modules={"enhance_model": net},
        ...                        hparams={"sample_rate": 16000, "chunk_seconds": 1.0})
        >>> [enhancer.batch_key(n) for n in (255, 256, 511, 16000, 16001)]
        [0, 1, 1, 62, None]
        """
        from cmse_speechbrain.cmcr_net import CMCRNet

        chunk, _ = self.chunking()
        if chunk and samples > chunk:
            return None
        model = self.mods.enhance_model
        return samples // model.hop_length if isinstance(model, CMCRNet) else samples

    def check_batch(self, noisy, lengths=None):
        """Checks what :meth:`enhance_batch` is given, in one line each.

        Arguments
        ---------
        noisy : torch.Tensor
            Float samples [B, samples] or [samples].
        lengths : torch.Tensor, optional
            Relative lengths [B] in (0, 1], as SpeechBrain's batches carry.

        Returns
        -------
        noisy : torch.Tensor
            [B, samples], float32.
        sizes : list of int or None
            Each signal's samples; None when none is padded.

        Raises
        ------
        TypeError, ValueError
            Not a float tensor of one or two dimensions, empty, too short,
            NaN/inf samples, bad lengths.

        Example
        -------
        >>> from cmse_speechbrain.cmcr_net import CMCRNet
        >>> net = CMCRNet(channels=[4, 8], d_model=8, nhead=2)
        >>> enhancer = EnhanceCMCR(
        ...     modules={"enhance_model": net},
        ...     hparams={"sample_rate": 16000, "min_audio_samples": 512},
        ... )
        >>> enhancer.check_batch(torch.zeros(2, 1000), torch.tensor([1.0, 0.6]))[1]
        [1000, 600]
        >>> enhancer.check_batch(torch.zeros(1000, 1))
        Traceback (most recent call last):
         ...
        ValueError: enhance_batch: too short: 1 samples per signal, need at least
        512 (a [N, 1] tensor is N signals of one sample; give [1, N])
        """
        if not isinstance(noisy, torch.Tensor):
            raise TypeError(
                f"enhance_batch: expected a torch.Tensor [batch, samples], got "
                f"{type(noisy).__name__} (torch.from_numpy converts an array)"
            )
        if not noisy.is_floating_point():
            raise TypeError(
                f"enhance_batch: {noisy.dtype} samples; give float samples in "
                "[-1, 1] (int16: divide by 32768)"
            )
        if noisy.dim() not in (1, 2):
            raise ValueError(
                f"enhance_batch: expected [batch, samples] or [samples], got shape "
                f"{list(noisy.shape)}"
            )
        if noisy.numel() == 0:
            raise ValueError(f"enhance_batch: empty input, shape {list(noisy.shape)}")
        noisy = noisy.unsqueeze(0) if noisy.dim() == 1 else noisy
        shortest = int(getattr(self.hparams, "min_audio_samples", 1))
        if noisy.shape[1] < shortest:
            raise ValueError(
                f"enhance_batch: too short: {noisy.shape[1]} samples per signal, need "
                f"at least {shortest} (a [N, 1] tensor is N signals of one sample; "
                "give [1, N])"
            )
        if not torch.isfinite(noisy).all():
            raise ValueError("enhance_batch: the input has NaN or infinite samples")
        if lengths is None:
            return noisy.float(), None
        lengths = torch.as_tensor(lengths, dtype=torch.float64).flatten().cpu()
        if (
            lengths.numel() != noisy.shape[0]
            or not ((lengths > 0) & (lengths <= 1)).all()
        ):
            raise ValueError(
                f"enhance_batch: lengths must be {noisy.shape[0]} relative lengths "
                f"in (0, 1], got {lengths.tolist()}"
            )
        sizes = [max(1, round(float(length) * noisy.shape[1])) for length in lengths]
        short = [k for k, size in enumerate(sizes) if size < shortest]
        if short:
            raise ValueError(
                f"enhance_batch: signal {short[0]} is too short: {sizes[short[0]]} "
                f"samples, need at least {shortest}"
            )
        return noisy.float(), None if min(sizes) == noisy.shape[1] else sizes

    @torch.no_grad()
    def enhance_batch(self, noisy, lengths=None):
        """Enhances a batch [B, samples] at the model's rate.

        Signals longer than ``chunk_seconds`` are processed in chunks that
        overlap by ``chunk_overlap_seconds``, cross-faded. With ``lengths``
        each signal is enhanced as if alone (padded only within its last
        STFT frame, see :meth:`batch_key`) and its padding comes back as
        zeros.

        Arguments
        ---------
        noisy : torch.Tensor
            Float samples [B, samples] (or [samples]); see :meth:`check_batch`.
        lengths : torch.Tensor, optional
            Relative lengths [B] in (0, 1].

        Returns
        -------
        torch.Tensor
            Enhanced signals, same shape.

        Example
        -------
        >>> from cmse_speechbrain.cmcr_net import CMCRNet
        >>> net = CMCRNet(channels=[4, 8], d_model=8, nhead=2)
        >>> enhancer = EnhanceCMCR(modules={"enhance_model": net},
        ...                        hparams={"sample_rate": 16000})
        >>> a, b = torch.rand(3000) - 0.5, torch.rand(1800) - 0.5
        >>> batch = torch.stack([a, torch.nn.functional.pad(b, (0, 1200))])
        >>> out = enhancer.enhance_batch(batch, torch.tensor([1.0, 0.6]))
        >>> (torch.allclose(out[1, :1800], enhancer.enhance_batch(b), atol=1e-5),
        ...  out[1, 1800:].abs().max().item())
        (True, 0.0)
        """
        squeeze = isinstance(noisy, torch.Tensor) and noisy.dim() == 1
        noisy, sizes = self.check_batch(noisy, lengths)
        noisy = noisy.to(self.device)
        if sizes is None:
            enhanced = self._enhance_padded(noisy)
        else:  # groups of one frame count, each cropped to its longest
            groups = {}
            for index, size in enumerate(sizes):
                key = self.batch_key(size)
                groups.setdefault(("alone", index) if key is None else key, []).append(
                    index
                )
            enhanced = torch.zeros_like(noisy)
            for members in groups.values():
                batch = torch.zeros(
                    len(members), max(sizes[i] for i in members), device=noisy.device
                )
                for row, index in enumerate(members):
                    batch[row, : sizes[index]] = noisy[index, : sizes[index]]
                out = self._enhance_padded(batch)
                for row, index in enumerate(members):
                    enhanced[index, : sizes[index]] = out[row, : sizes[index]]
        return enhanced.squeeze(0) if squeeze else enhanced

    def _enhance_padded(self, noisy):
        """[B, samples] of one length, whole or in cross-faded chunks."""
        chunk, overlap = self.chunking()
        length = noisy.shape[-1]
        with self.inference_ctx:
            if chunk == 0 or length <= chunk:
                enhanced = self._enhance(noisy, None)
            else:
                starts = chunk_starts(length, chunk, overlap)
                enhanced = torch.zeros_like(noisy)
                for index, start in enumerate(starts):
                    weight = chunk_weight(
                        index, starts, length, chunk, overlap, noisy.device
                    )
                    piece = noisy[:, start : start + chunk]
                    enhanced[:, start : start + piece.shape[1]] += (
                        self._enhance(piece, None).float() * weight
                    )
        return enhanced.float()

    def read_input(self, filename, mix_down=True):
        """Reads a file as the model takes it (what :meth:`enhance_file` does
        before enhancing).

        Arguments
        ---------
        filename : str or pathlib.Path
            Input audio (any rate, any channel count, int or float samples).
        mix_down : bool
            If False, a multi-channel input is refused instead of averaged.

        Returns
        -------
        noisy : torch.Tensor
            [samples] at the model's rate, mono.
        info : soundfile._SoundFileInfo
            The file's rate and length, for :meth:`write_output`.
        """
        info = audio_info(filename)
        if info.channels > 1 and not mix_down:
            raise AudioFileError(
                filename,
                f"has {info.channels} channels; mono expected (mix_down=False)",
            )
        noisy = resample(
            read_audio_checked(filename, info.samplerate),
            info.samplerate,
            self.sample_rate,
        )
        shortest = getattr(self.hparams, "min_audio_samples", 1)
        if noisy.numel() < shortest:
            raise AudioFileError(
                filename,
                f"too short: {noisy.numel()} samples at {self.sample_rate} Hz, "
                f"need at least {shortest}",
            )
        return noisy, info

    def write_output(self, enhanced, info, filename, output_filename=None):
        """Brings an enhanced signal back to its input file's rate and length
        and writes it (what :meth:`enhance_file` does after enhancing).

        Arguments
        ---------
        enhanced : torch.Tensor
            [samples] at the model's rate.
        info : soundfile._SoundFileInfo
            The input's, from :meth:`read_input`.
        filename : str or pathlib.Path
            The input file (never overwritten).
        output_filename : str or pathlib.Path, optional
            Where to write it, atomically, as 16-bit PCM (scaled to peak 1.0
            with a warning rather than clipped).

        Returns
        -------
        torch.Tensor
            [samples] at the input's rate, exactly as long as the input.

        Raises
        ------
        AudioFileError
            A non-finite enhanced signal (nothing is written).
        """
        if not torch.isfinite(enhanced).all():  # e.g. an input near float's range
            raise AudioFileError(filename, self.NON_FINITE)
        enhanced = resample(enhanced.cpu(), self.sample_rate, info.samplerate)
        # resampling there and back rounds the length up: keep the input's
        enhanced = fit_length(enhanced, info.frames)
        if output_filename is not None:
            self._write_pcm(
                [enhanced],
                info.samplerate,
                self.check_output(filename, output_filename),
            )
        return enhanced

    def check_output(self, filename, output_filename):
        """The output path, refused before any work if it cannot hold 16-bit
        PCM (:func:`check_output_name`) or is the input file."""
        output = check_output_name(output_filename)
        if output.exists() and output.resolve() == pathlib.Path(filename).resolve():
            raise ValueError(f"{output}: refusing to overwrite the input file")
        return output

    @torch.no_grad()
    def enhance_to_file(self, filename, output_filename, mix_down=True):
        """Enhances a file of any length into another, disk to disk, in
        memory bounded by the chunk length (:meth:`chunking`), not the file's.

        The input is read one chunk (plus the resampler's margin) at a
        time, at the model's rate (:class:`FileSignal`); each chunk is
        enhanced and cross-faded with its neighbours exactly as
        :meth:`enhance_batch` does, and the finished samples go to a float32
        scratch file beside the output. A second pass brings them back to
        the input's rate block by block (:class:`ResampledReader`) and finds
        the peak; the last pass writes 16-bit PCM, scaled to peak 1.0 with a
        warning if it is louder (never clipped), as :meth:`write_output`
        does for the whole file. The result equals :meth:`enhance_file`'s
        to float rounding (within one 16-bit step). Scratch files take 4
        bytes per sample at the model's rate (and at the input's, if it
        differs) in the output's folder until the output is renamed into
        place; they are named as partial files (``.cmse-<pid>-*``).

        A file no longer than one chunk, or with chunking off
        (``chunk_seconds`` 0), goes through :meth:`enhance_file` in memory.

        Arguments
        ---------
        filename : str or pathlib.Path
            Input audio (any rate, any channel count); never overwritten.
        output_filename : str or pathlib.Path
            Where to write, atomically, at the input's rate and length.
        mix_down : bool
            If False, a multi-channel input is refused instead of averaged.

        Returns
        -------
        float
            The gain applied to fit full scale (1.0 unless scaled).

        Raises
        ------
        AudioFileError
            Unreadable or NaN/inf input samples, or a non-finite enhanced
            chunk: the file fails and nothing is left (no output, no partial,
            no scratch file).

        Example
        -------
        >>> import numpy as np
        >>> from cmse_speechbrain.cmcr_net import CMCRNet
        >>> net = CMCRNet(channels=[4, 8], d_model=8, nhead=2)
        >>> enhancer = EnhanceCMCR(modules={"enhance_model": net},
        ...                        hparams={"sample_rate": 16000, "chunk_seconds": 0.5,
        ...                                 "chunk_overlap_seconds": 0.1})
        >>> tmp = getfixture("tmp_path")
        >>> noisy = np.random.default_rng(0).uniform(-0.3, 0.3, 44100 * 2)
        >>> sf.write(tmp / "in.wav", noisy, 44100)
        >>> enhancer.enhance_to_file(tmp / "in.wav", tmp / "out.wav")
        1.0
        >>> sf.info(tmp / "out.wav").frames, sorted(p.name for p in tmp.iterdir())
        (88200, ['in.wav', 'out.wav'])
        """
        output = self.check_output(filename, output_filename)
        chunk, overlap = self.chunking()
        info = audio_info(filename)
        if info.channels > 1 and not mix_down:
            raise AudioFileError(
                filename,
                f"has {info.channels} channels; mono expected (mix_down=False)",
            )
        length = resampled_length(info.frames, info.samplerate, self.sample_rate)
        if chunk == 0 or length <= chunk:  # one chunk: in memory, bounded anyway
            noisy, info = self.read_input(filename, mix_down)
            enhanced = self.write_output(self.enhance_batch(noisy), info, filename)
            return self._write_pcm([enhanced], info.samplerate, output)
        with contextlib.ExitStack() as stack:
            noisy = stack.enter_context(FileSignal(filename, self.sample_rate))
            scratch = _FloatFile(
                stack.enter_context(scratch_file(output.parent, ".f32"))
            )
            stack.callback(scratch.close)
            self._enhance_chunks(noisy, scratch, chunk, overlap, filename)
            if info.samplerate != self.sample_rate:  # back to the input's rate
                back = ResampledReader(
                    scratch.read, scratch.length, self.sample_rate, info.samplerate
                )
                at_rate = _FloatFile(
                    stack.enter_context(scratch_file(output.parent, ".f32"))
                )
                stack.callback(at_rate.close)
                block = max(1, chunk * info.samplerate // self.sample_rate)
                for start in range(0, info.frames, block):
                    piece = fit_length(
                        back.read(start, min(start + block, info.frames)),
                        min(block, info.frames - start),
                    )
                    if not torch.isfinite(piece).all():
                        raise AudioFileError(filename, self.NON_FINITE)
                    at_rate.append(piece)
                scratch = at_rate
            block = max(1, chunk)
            blocks = (
                scratch.read(a, a + block) for a in range(0, scratch.length, block)
            )
            return self._write_pcm(blocks, info.samplerate, output, scratch)

    #: Why a file whose enhanced signal is not finite fails.
    NON_FINITE = (
        "the enhanced signal has NaN or infinite samples "
        "(input far beyond full scale?); nothing written"
    )

    def _enhance_chunks(self, noisy, scratch, chunk, overlap, filename):
        """Enhances ``noisy`` (sliceable) chunk by chunk into ``scratch``,
        cross-faded as :meth:`_enhance_padded` does, keeping only the
        overlap of the chunk before."""
        length = len(noisy)
        starts = chunk_starts(length, chunk, overlap)
        carried = None  # the previous chunk's weighted tail, under this chunk's head
        with self.inference_ctx:
            for index, start in enumerate(starts):
                piece = noisy[start : start + chunk].to(self.device).unsqueeze(0)
                weight = chunk_weight(
                    index, starts, length, chunk, overlap, self.device
                )
                out = self._enhance(piece, None).float()[0] * weight
                if not torch.isfinite(out).all():
                    raise AudioFileError(filename, self.NON_FINITE)
                if carried is not None:
                    out[: carried.numel()] += carried
                final = (
                    starts[index + 1] - start
                    if index + 1 < len(starts)
                    else out.numel()
                )
                scratch.append(out[:final])
                carried = out[final:]

    def _write_pcm(self, blocks, rate, output, source=None):
        """Writes blocks of samples to ``output`` as 16-bit PCM, atomically;
        louder than full scale: scaled to peak 1.0 (a first pass over
        ``source`` finds the peak; without it ``blocks`` is a list)."""
        if source is None:
            blocks = list(blocks)
            peak = max(float(b.abs().max()) for b in blocks)
        else:
            step = max(1, rate)
            peak = max(
                float(source.read(a, a + step).abs().max())
                for a in range(0, source.length, step)
            )
        with (
            atomic_output(output) as partial,
            sf.SoundFile(
                str(partial), "w", samplerate=rate, channels=1, subtype="PCM_16"
            ) as fout,
        ):
            for block in blocks:
                # never clip
                fout.write((block / peak if peak > 1.0 else block).numpy())
        if peak > 1.0:
            logger.warning("%s: peak %.2f, scaled to 1.0", output, peak)
            return 1.0 / peak
        return 1.0

    def enhance_file(self, filename, output_filename=None, mix_down=True, **kwargs):
        """Enhances one audio file.

        Arguments
        ---------
        filename : str or pathlib.Path
            Input audio (any rate, any channel count, int or float samples).
        output_filename : str or pathlib.Path, optional
            If given, the enhanced audio is written there (atomically) at the
            input's rate. It may not be the input file.
        mix_down : bool
            If False, a multi-channel input is refused instead of averaged.
        **kwargs
            SpeechBrain's fetching arguments of ``load_audio`` (``savedir``,
            ``source``): ignored, the file is read where it is.

        Returns
        -------
        torch.Tensor
            The enhanced signal [samples] at the input's rate, exactly as
            long as the input (held whole in memory: for long files
            :meth:`enhance_to_file` writes the same output in bounded memory).
        """
        unknown = set(kwargs) - {"savedir", "source"}
        if unknown:
            raise TypeError(
                "enhance_file() got an unexpected "
                f"keyword argument {sorted(unknown)[0]!r}"
            )
        if output_filename is not None:
            check_output_name(output_filename)  # before the work
        noisy, info = self.read_input(filename, mix_down)
        return self.write_output(
            self.enhance_batch(noisy), info, filename, output_filename
        )

    def forward(self, noisy, lengths=None):
        """Same as :meth:`enhance_batch`."""
        return self.enhance_batch(noisy, lengths)
