"""Inference interface: a trained CMCR-Net as a SpeechBrain ``Pretrained``.

Example (a folder with ``hyperparams.yaml`` and ``enhance_model.ckpt``)::

    from cmse_speechbrain.inference import EnhanceCMCR
    enhancer = EnhanceCMCR.from_hparams(source="path/to/model_folder")
    enhanced = enhancer.enhance_file("noisy.wav", output_filename="enhanced.wav")

Any input rate is resampled to the model's and the output is returned (and
written) at the input's rate; several channels are mixed down (or refused
with ``mix_down=False``). Long signals are enhanced in overlapping chunks
joined by cross-fades, so memory stays flat in the signal's length.

Authors
 * cmse-speechbrain contributors 2026
"""

import logging
import pathlib

import torch
import torchaudio.functional as AF

from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.fetching import LocalStrategy

from cmse_speechbrain.checkpoints import UNSAFE_LOAD_ERRORS, describe_load_error
from cmse_speechbrain.dataio import (
    AudioFileError,
    audio_info,
    read_audio_checked,
    write_audio_atomic,
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

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", savedir=None, **kwargs):
        """Loads a local model folder (never a hub lookup).

        SpeechBrain treats a ``source`` that is not an existing folder as a
        hub id and goes to the network; this refuses it instead. Without
        ``savedir`` the files are used in place.
        """
        folder = pathlib.Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"{source}: no such model folder")
        if not (folder / hparams_file).is_file():
            raise FileNotFoundError(f"{folder / hparams_file}: missing")
        if savedir is None:
            savedir = folder
            kwargs.setdefault("local_strategy", LocalStrategy.NO_LINK)
        try:
            return super().from_hparams(
                source=str(folder), hparams_file=hparams_file, savedir=str(savedir), **kwargs
            )
        except FileNotFoundError:
            raise
        except UNSAFE_LOAD_ERRORS as error:
            raise ValueError(
                f"{folder}: a checkpoint in this model folder cannot be loaded safely "
                f"({describe_load_error(error)})"
            ) from None

    @property
    def sample_rate(self):
        """The model's sampling rate."""
        return self.hparams.sample_rate

    def _enhance(self, wavs, lengths):
        enhanced, _ = self.mods.enhance_model(wavs, lengths)
        return enhanced

    @torch.no_grad()
    def enhance_batch(self, noisy, lengths=None):
        """Enhances a batch [B, samples] at the model's rate.

        Signals longer than ``chunk_seconds`` are processed in chunks that
        overlap by ``chunk_overlap_seconds``, cross-faded.

        Arguments
        ---------
        noisy : torch.Tensor
            [B, samples] (or [samples]).
        lengths : torch.Tensor, optional
            Relative lengths [B].

        Returns
        -------
        torch.Tensor
            Enhanced signals, same shape.
        """
        squeeze = noisy.dim() == 1
        noisy = noisy.unsqueeze(0) if squeeze else noisy
        noisy = noisy.to(self.device).float()
        chunk = int(getattr(self.hparams, "chunk_seconds", 10.0) * self.sample_rate)
        overlap = int(
            getattr(self.hparams, "chunk_overlap_seconds", 1.0) * self.sample_rate
        )
        length = noisy.shape[-1]
        with self.inference_ctx:
            if chunk <= 0 or length <= chunk:
                enhanced = self._enhance(noisy, lengths)
            else:
                if not 0 < overlap < chunk:
                    raise ValueError(
                        f"chunk overlap ({overlap} samples) must be in (0, {chunk})"
                    )
                starts = list(range(0, length - overlap, chunk - overlap))
                weights = chunk_weights(length, starts, chunk, overlap, noisy.device)
                enhanced = torch.zeros_like(noisy)
                for start, weight in zip(starts, weights):
                    piece = noisy[:, start : start + chunk]
                    enhanced[:, start : start + piece.shape[1]] += (
                        self._enhance(piece, None).float() * weight
                    )
        enhanced = enhanced.float()
        return enhanced.squeeze(0) if squeeze else enhanced

    def enhance_file(self, filename, output_filename=None, mix_down=True):
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

        Returns
        -------
        torch.Tensor
            The enhanced signal [samples] at the input's rate.
        """
        info = audio_info(filename)
        if info.channels > 1 and not mix_down:
            raise AudioFileError(
                filename, f"has {info.channels} channels; mono expected (mix_down=False)"
            )
        noisy = read_audio_checked(
            filename, self.sample_rate, min_samples=getattr(self.hparams, "min_audio_samples", 1)
        )
        enhanced = self.enhance_batch(noisy).cpu()
        if info.samplerate != self.sample_rate:
            enhanced = AF.resample(enhanced, self.sample_rate, info.samplerate)
        if output_filename is not None:
            output = pathlib.Path(output_filename)
            if output.exists() and output.resolve() == pathlib.Path(filename).resolve():
                raise ValueError(f"{output}: refusing to overwrite the input file")
            gain = write_audio_atomic(output, enhanced, info.samplerate, scale_to_fit=True)
            if gain < 1.0:  # a 16-bit file would have clipped
                logger.warning("%s: peak %.2f, scaled to 1.0", output, 1.0 / gain)
        return enhanced

    def forward(self, noisy, lengths=None):
        """Same as :meth:`enhance_batch`."""
        return self.enhance_batch(noisy, lengths)
