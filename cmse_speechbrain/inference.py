"""Inference interface: a trained CMCR-Net as a SpeechBrain ``Pretrained``.

Example (a folder with ``hyperparams.yaml`` and ``enhance_model.ckpt``)::

    from cmse_speechbrain.inference import EnhanceCMCR
    enhancer = EnhanceCMCR.from_hparams(source="path/to/model_folder")
    enhanced = enhancer.enhance_file("noisy.wav", output_filename="enhanced.wav")

Any input rate is resampled to the model's and the output is returned (and
written) at the input's rate and with exactly the input's number of
samples; several channels are mixed down (or refused with
``mix_down=False``). Long signals are enhanced in overlapping chunks joined
by cross-fades, so memory stays flat in the signal's length.

A model folder is loaded without running code from it
(:mod:`cmse_speechbrain.safe_yaml`): its YAML may only build this package's
networks and the SpeechBrain classes inference needs, and its weights are
read with ``torch.load(weights_only=True)``. ``trust_code=True`` loads any
SpeechBrain YAML, with a warning.

Authors
 * cmse-speechbrain contributors 2026
"""

import logging
import math
import pathlib

import soundfile as sf
import torch
import torchaudio.functional as AF

from speechbrain.inference.interfaces import Pretrained

from cmse_speechbrain.checkpoints import UNSAFE_LOAD_ERRORS, describe_load_error
from cmse_speechbrain.dataio import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    AudioFileError,
    atomic_output,
    audio_info,
    read_audio_checked,
)
from cmse_speechbrain.safe_yaml import check_weights_loaded, load_pretrained, random_weights_error

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
        raise RuntimeError(f"{device!r} is not a device (cpu, cuda, cuda:1, ...)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"CUDA is not available (device {device!r})")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise RuntimeError(f"there is no CUDA device {parsed.index} ({count} found)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"MPS is not available (device {device!r})")


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

    out = resample_poly(signal.detach().cpu().double().numpy(), up, down, axis=-1)
    return torch.from_numpy(out).to(signal.dtype)


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
        raise ValueError(f"{path}: is a folder; give a file name such as {path / 'enhanced.wav'}")
    extension = path.suffix.lower()
    if not extension:
        raise ValueError(f"{path}: no extension, so no audio format; use .wav or .flac")
    audio_format = {".aif": "AIFF", ".aifc": "AIFF"}.get(extension, extension[1:].upper())
    if audio_format not in sf.available_formats() or not sf.check_format(audio_format, "PCM_16"):
        raise ValueError(f"{path}: cannot write 16-bit PCM audio as {extension}; use .wav or .flac")
    return path


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
    ramp = (torch.arange(overlap, device=device) + 0.5) / overlap
    weights = []
    for index, start in enumerate(starts):
        size = min(chunk, length - start)
        weight = torch.ones(size, device=device)
        if index > 0:
            weight[:overlap] = ramp[: min(overlap, size)]
        if index < len(starts) - 1:
            weight[-overlap:] = 1 - ramp
        weights.append(weight)
    return weights


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
    FETCH_ARGUMENTS = ("huggingface_cache_dir", "revision", "use_auth_token", "pymodule_file",
                       "local_strategy", "fetch_config")

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", savedir=None,
                     trust_code=False, download_only=False, **kwargs):
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
                raise random_weights_error(folder / hparams_file, ["enhance_model"]) from None
            raise ValueError(
                f"{folder}: a checkpoint in this model folder cannot be loaded safely "
                f"({describe_load_error(error)})"
            ) from None
        if trust_code:  # safe loading checks it itself
            check_weights_loaded(enhancer.mods, getattr(enhancer.hparams, "pretrainer", None),
                                 folder / hparams_file)
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

        check_whole("sample_rate", self.hparams.sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
        check_whole("min_audio_samples", getattr(self.hparams, "min_audio_samples", 1), 1,
                    10 * self.hparams.sample_rate)
        model = self.mods.enhance_model
        if isinstance(model, CMCRNet) and model.config["sample_rate"] != self.sample_rate:
            raise ValueError(f"sample_rate {self.sample_rate} is not the rate of enhance_model "
                             f"({model.config['sample_rate']})")
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
        for name, value in [("chunk_seconds", seconds), ("chunk_overlap_seconds", overlap_seconds)]:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite positive number of seconds, got {value}")
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
        >>> enhancer = EnhanceCMCR(modules={"enhance_model": CMCRNet(channels=[4, 8], d_model=8, nhead=2)},
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
        >>> enhancer = EnhanceCMCR(modules={"enhance_model": CMCRNet(channels=[4, 8], d_model=8, nhead=2)},
        ...                        hparams={"sample_rate": 16000, "min_audio_samples": 512})
        >>> enhancer.check_batch(torch.zeros(2, 1000), torch.tensor([1.0, 0.6]))[1]
        [1000, 600]
        >>> enhancer.check_batch(torch.zeros(1000, 1))
        Traceback (most recent call last):
         ...
        ValueError: enhance_batch: too short: 1 samples per signal, need at least 512 (a [N, 1] tensor is N signals of one sample; give [1, N])
        """
        if not isinstance(noisy, torch.Tensor):
            raise TypeError(f"enhance_batch: expected a torch.Tensor [batch, samples], got "
                            f"{type(noisy).__name__} (torch.from_numpy converts an array)")
        if not noisy.is_floating_point():
            raise TypeError(f"enhance_batch: {noisy.dtype} samples; give float samples in "
                            "[-1, 1] (int16: divide by 32768)")
        if noisy.dim() not in (1, 2):
            raise ValueError(f"enhance_batch: expected [batch, samples] or [samples], got shape "
                             f"{list(noisy.shape)}")
        if noisy.numel() == 0:
            raise ValueError(f"enhance_batch: empty input, shape {list(noisy.shape)}")
        noisy = noisy.unsqueeze(0) if noisy.dim() == 1 else noisy
        shortest = int(getattr(self.hparams, "min_audio_samples", 1))
        if noisy.shape[1] < shortest:
            raise ValueError(f"enhance_batch: too short: {noisy.shape[1]} samples per signal, need "
                             f"at least {shortest} (a [N, 1] tensor is N signals of one sample; "
                             "give [1, N])")
        if not torch.isfinite(noisy).all():
            raise ValueError("enhance_batch: the input has NaN or infinite samples")
        if lengths is None:
            return noisy.float(), None
        lengths = torch.as_tensor(lengths, dtype=torch.float64).flatten().cpu()
        if lengths.numel() != noisy.shape[0] or not ((lengths > 0) & (lengths <= 1)).all():
            raise ValueError(f"enhance_batch: lengths must be {noisy.shape[0]} relative lengths "
                             f"in (0, 1], got {lengths.tolist()}")
        sizes = [max(1, round(float(length) * noisy.shape[1])) for length in lengths]
        short = [k for k, size in enumerate(sizes) if size < shortest]
        if short:
            raise ValueError(f"enhance_batch: signal {short[0]} is too short: {sizes[short[0]]} "
                             f"samples, need at least {shortest}")
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
        >>> enhancer = EnhanceCMCR(modules={"enhance_model": CMCRNet(channels=[4, 8], d_model=8, nhead=2)},
        ...                        hparams={"sample_rate": 16000})
        >>> a, b = torch.rand(3000) - 0.5, torch.rand(1800) - 0.5
        >>> batch = torch.stack([a, torch.nn.functional.pad(b, (0, 1200))])
        >>> out = enhancer.enhance_batch(batch, torch.tensor([1.0, 0.6]))
        >>> torch.allclose(out[1, :1800], enhancer.enhance_batch(b), atol=1e-5), out[1, 1800:].abs().max().item()
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
                groups.setdefault(("alone", index) if key is None else key, []).append(index)
            enhanced = torch.zeros_like(noisy)
            for members in groups.values():
                batch = torch.zeros(len(members), max(sizes[i] for i in members), device=noisy.device)
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
                starts = list(range(0, length - overlap, chunk - overlap))
                weights = chunk_weights(length, starts, chunk, overlap, noisy.device)
                enhanced = torch.zeros_like(noisy)
                for start, weight in zip(starts, weights):
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
                filename, f"has {info.channels} channels; mono expected (mix_down=False)"
            )
        noisy = resample(read_audio_checked(filename, info.samplerate),
                         info.samplerate, self.sample_rate)
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
            raise AudioFileError(filename, "the enhanced signal has NaN or infinite samples "
                                           "(input far beyond full scale?); nothing written")
        enhanced = resample(enhanced.cpu(), self.sample_rate, info.samplerate)
        # resampling there and back rounds the length up: keep the input's
        enhanced = fit_length(enhanced, info.frames)
        if output_filename is not None:
            output = check_output_name(output_filename)
            if output.exists() and output.resolve() == pathlib.Path(filename).resolve():
                raise ValueError(f"{output}: refusing to overwrite the input file")
            peak = float(enhanced.abs().max())
            audio = enhanced / peak if peak > 1.0 else enhanced  # never clip
            with atomic_output(output) as partial:
                sf.write(str(partial), audio.numpy(), info.samplerate, subtype="PCM_16")
            if peak > 1.0:
                logger.warning("%s: peak %.2f, scaled to 1.0", output, peak)
        return enhanced

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
            long as the input.
        """
        unknown = set(kwargs) - {"savedir", "source"}
        if unknown:
            raise TypeError(f"enhance_file() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        if output_filename is not None:
            check_output_name(output_filename)  # before the work
        noisy, info = self.read_input(filename, mix_down)
        return self.write_output(self.enhance_batch(noisy), info, filename, output_filename)

    def forward(self, noisy, lengths=None):
        """Same as :meth:`enhance_batch`."""
        return self.enhance_batch(noisy, lengths)
