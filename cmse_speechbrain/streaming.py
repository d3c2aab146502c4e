"""Block-by-block (streaming) enhancement with a causal, windowed CMCR-Net.

:class:`StreamingEnhancer` takes audio in blocks of any size (one sample, a
hop, a second...) and returns the enhanced samples as soon as they are
final. Each STFT frame is computed once: the network runs on the new frames
only, through its own blocks (:meth:`CMCRNet.stream_spectrum
<cmse_speechbrain.cmcr_net.CMCRNet.stream_spectrum>`), each of which keeps
the past frames it needs (causal convolutions: the previous input frame; CM
attentions: keys, values and pooled features of the last
``attention_window - 1`` frames). The enhancer itself keeps only

* the STFT input: the samples of the frame not yet complete;
* the input level: the running sum of the frames' power (the causal model
  normalises its input by the running mean power, see
  :func:`cmse_speechbrain.cmcr_net.spectrum_level`);
* the iSTFT: the overlap-add and window-envelope tails.

Per STFT frame the work is small and the cost is mostly the number of
operations, so by default it runs a copy of the model with two speed passes
that keep its modules: each BatchNorm folded into its convolution
(:func:`fold_batchnorm`), and each block compiled with TorchScript
(:func:`script_blocks`; the blocks' ``forward`` and ``stream``, while the
per-frame sequence of blocks stays :meth:`CMCRNet.stream_spectrum
<cmse_speechbrain.cmcr_net.CMCRNet.stream_spectrum>` in Python).

The concatenation of its outputs (after :meth:`StreamingEnhancer.flush`)
equals the offline output ``model(wavs)`` of the same causal model on the
whole signal, up to float rounding.

Latency: output sample ``n`` needs the STFT frame that starts after it,
i.e. the input up to sample ``n + n_fft - 1 - (n mod hop)``. The algorithmic
latency is therefore ``n_fft`` samples (32 ms at 16 kHz, n_fft=512), plus
the block size of the caller's buffering, plus the processing time.

Run streams with one intra-op thread (``torch.set_num_threads(1)``): per
frame the operations are tiny, and on a busy machine a second thread only
makes each of them wait for it.

Authors
 * cmse-speechbrain contributors 2026
"""

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cmse_speechbrain.cmcr_net import DecoderBlock, EncoderBlock, spectrum_level


def fold_batchnorm(model):
    """A copy of ``model`` in eval mode with each BatchNorm of its encoder
    and decoder blocks folded into the block's convolution (the same
    outputs in eval mode, fewer operations; for inference only: the copy's
    state_dict has no BatchNorm entries).

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8], d_model=8, nhead=2).eval()
    >>> folded = fold_batchnorm(model)
    >>> wav = torch.rand(1, 4000) - 0.5
    >>> torch.allclose(folded(wav)[0], model(wav)[0], atol=1e-5)
    True
    >>> isinstance(model.encoder[0].norm, torch.nn.BatchNorm2d)  # untouched
    True
    """
    folded = copy.deepcopy(model).eval()
    for block in folded.modules():
        if isinstance(block, (EncoderBlock, DecoderBlock)) and isinstance(
            block.norm, nn.BatchNorm2d
        ):
            block.conv = fuse_conv_bn_eval(
                block.conv, block.norm, transpose=isinstance(block, DecoderBlock)
            )
            block.norm = nn.Identity()
    return folded


def script_blocks(model):
    """A copy of ``model`` in eval mode whose blocks (encoder, gates,
    decoder, CM) are compiled with TorchScript, ``stream`` included; the
    network around them stays Python. The same outputs, less time per call.

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8], d_model=8, nhead=2, causal=True,
    ...                 attention_window=4).eval()
    >>> scripted = script_blocks(model)
    >>> wav = torch.rand(1, 4000) - 0.5
    >>> torch.allclose(scripted(wav)[0], model(wav)[0], atol=1e-5)
    True
    """
    scripted = copy.deepcopy(model).eval()
    with warnings.catch_warnings():  # torch.jit is deprecated in 2.14
        warnings.simplefilter("ignore", FutureWarning)
        for blocks in (scripted.encoder, scripted.gates, scripted.decoder):
            for index, block in enumerate(blocks):
                blocks[index] = torch.jit.script(block)
        if scripted.cm is not None:
            scripted.cm = torch.jit.script(scripted.cm)
    return scripted


class StreamingEnhancer:
    """Enhances a stream in blocks of any size with a causal CMCR-Net.

    Arguments
    ---------
    model : cmse_speechbrain.cmcr_net.CMCRNet
        A model built with ``causal=True``, a finite ``attention_window`` (or
        ``use_cm=False``) and ``lookahead_frames=0``. It is put in eval mode.
    batch_size : int
        Number of parallel streams (blocks are [batch_size, samples]).
    fold : bool
        Fold BatchNorm into the convolutions (:func:`fold_batchnorm`).
    script : bool
        Compile the blocks with TorchScript (:func:`script_blocks`).

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2,
    ...                 causal=True, attention_window=8).eval()
    >>> wav = torch.rand(1, 3000) - 0.5
    >>> streamer = StreamingEnhancer(model)
    >>> pieces = [streamer(block) for block in wav.split(700, dim=1)]
    >>> out = torch.cat(pieces + [streamer.flush()], dim=1)
    >>> torch.allclose(out, model(wav)[0], atol=1e-5)
    True
    >>> streamer.latency_seconds
    0.032
    """

    def __init__(self, model, batch_size=1, fold=True, script=True):
        if not model.causal:
            raise ValueError("streaming needs a causal model (causal=True)")
        if model.lookahead_frames:
            raise ValueError("streaming supports lookahead_frames=0 only")
        if getattr(model, "control", None) is not None:
            raise ValueError(
                "the self-attention control (control_width) is not streamable"
            )
        if model.cm is not None and model.attention_window is None:
            raise ValueError("streaming needs a finite attention_window (bounded past)")
        self.model = model.eval()
        self.batch_size = batch_size
        self.n_fft = model.n_fft
        self.hop = model.hop_length
        self.window = model.stft.window.clone()
        self.network = fold_batchnorm(model) if fold else self.model
        if script:
            self.network = script_blocks(self.network)
        self.reset()

    @property
    def latency_samples(self):
        """Algorithmic latency in samples (one STFT window, no look-ahead)."""
        return self.n_fft

    @property
    def latency_seconds(self):
        """Algorithmic latency in seconds."""
        return self.latency_samples / self.model.config["sample_rate"]

    def reset(self):
        """Forgets the stream: the next block starts a new signal."""
        batch = self.batch_size
        # STFT input: the centre padding of the first frame, as offline
        self.pending = torch.zeros(batch, self.n_fft // 2)
        self.samples_in = 0
        self.samples_out = 0
        self.frames = 0
        self.power_sum = torch.zeros(batch)
        self.network_state = []  # per block of the network, see stream_spectrum
        self.overlap = torch.zeros(batch, self.n_fft - self.hop)
        self.envelope = torch.zeros(self.n_fft - self.hop)
        self.to_trim = self.n_fft // 2  # the iSTFT drops the centre padding

    @torch.no_grad()
    def __call__(self, block):
        """Enhances the next block [batch, samples] (or [samples]).

        Returns the samples that became final, [batch, n] with ``n`` between
        0 and about ``samples + hop``; the rest comes with later blocks or
        :meth:`flush`.
        """
        squeeze = block.dim() == 1
        block = block.view(self.batch_size, -1).float()
        self.samples_in += block.shape[1]
        out = self._push(block)
        return out.squeeze(0) if squeeze else out

    @torch.no_grad()
    def flush(self):
        """Ends the stream: returns the remaining samples and resets.

        The end is padded as the offline STFT pads it, so that all outputs
        concatenated have the input's length and equal the offline output.
        """
        out = self._push(torch.zeros(self.batch_size, self.n_fft // 2))
        # the iSTFT's last samples: only the frames that exist, normalised
        # by their own window envelope (as torch.istft does)
        tail = self.overlap / self.envelope.clamp(min=1e-11)
        tail = tail[:, self.to_trim :][:, : self.samples_in - self.samples_out]
        out = torch.cat([out, tail], dim=1)
        self.reset()
        return out

    def _push(self, block):
        self.pending = torch.cat([self.pending, block], dim=1)
        count = (self.pending.shape[1] - self.n_fft) // self.hop + 1
        if count <= 0:
            return block.new_zeros(self.batch_size, 0)
        frames = self.pending.unfold(1, self.n_fft, self.hop)[:, :count]
        self.pending = self.pending[:, count * self.hop :]
        spec = torch.fft.rfft(frames * self.window, dim=-1)
        spec = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)
        level = self._level(spec)
        enhanced, self.network_state = self.network.stream_spectrum(
            spec, level, self.network_state
        )  # [B, 2, F, count]
        out = self._overlap_add(enhanced)
        self.frames += count
        out = out[:, self.to_trim :]
        self.to_trim = max(0, self.to_trim - count * self.hop)
        # never beyond the input's length (reached only while flushing)
        out = out[:, : self.samples_in - self.samples_out]
        self.samples_out += out.shape[1]
        return out

    def _level(self, spec):
        # the running mean power of the frames so far, as the offline
        # causal model computes it over the whole signal
        level = spectrum_level(
            spec, causal=True, past_power=self.power_sum, past_frames=self.frames
        )
        self.power_sum = self.power_sum + spec.pow(2).sum(dim=1).mean(dim=1).sum(dim=1)
        return level

    def _overlap_add(self, enhanced):
        complex_spec = torch.complex(enhanced[:, 0], enhanced[:, 1])
        frames = torch.fft.irfft(complex_spec.transpose(1, 2), n=self.n_fft)
        frames = frames * self.window
        count = frames.shape[1]
        total = (count - 1) * self.hop + self.n_fft
        signal = F.fold(
            frames.transpose(1, 2),
            (1, total),
            (1, self.n_fft),
            stride=(1, self.hop),
        ).view(self.batch_size, total)
        squares = (self.window**2)[None, :, None].expand(1, -1, count)
        envelope = F.fold(
            squares, (1, total), (1, self.n_fft), stride=(1, self.hop)
        ).view(total)
        keep = self.n_fft - self.hop
        signal[:, :keep] += self.overlap
        envelope[:keep] += self.envelope
        final = count * self.hop
        self.overlap = signal[:, final:].clone()
        self.envelope = envelope[final:].clone()
        return signal[:, :final] / envelope[:final].clamp(min=1e-11)
