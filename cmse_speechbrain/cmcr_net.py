"""CMCR-Net: a CRN-style complex-spectrum enhancer with a collaboration module.

Implements the network of Xu, Tu, Han and Yang, "All Information is
Necessary: Integrating Speech Positive and Negative Information by
Contrastive Learning for Speech Enhancement" (arXiv 2304.13439, 2023).
The paper's method section was not available; the design follows its
abstract and the authors' public code for the earlier version (CRC-Net).
Every choice that the two leave open is written down where it is made and
exposed as a constructor argument (hence a YAML hyperparameter):

* Signal path: STFT (512-point Hamming window, hop 256, i.e. 32 ms / 16 ms
  at 16 kHz); the network's input is the spectrum divided by its level,
  magnitude-compressed, as real, imaginary and magnitude channels (this
  project's choice; the authors feed the raw real and imaginary parts); a
  complex mask on the noisy spectrum, inverted by iSTFT to the input's
  length.
* Backbone: 5 Conv2d blocks (kernel 3 and stride 2 along frequency,
  ``time_kernel`` along time: causal as in the authors' code, or centred;
  BatchNorm, ELU), mirrored by transposed convolutions whose skip
  connections pass through attention gates.
* Collaboration module (CM) in the bottleneck: one block applied
  ``cm_repeats`` times with shared weights, each made of a
  :class:`ContrastiveAttention` (split into speech-relevant and
  speech-irrelevant streams) and an :class:`InteractiveAttention`
  (learnable correlation of the two streams); see
  :mod:`cmse_speechbrain.collaboration`.

Every block of a causal model also runs on a stream: ``block.stream(x,
state)`` takes new frames and the block's state (the past frames its
convolution or attention still needs: a list of tensors, empty at the start
of a stream) and returns the block's output for the new frames, equal to
``block(x)`` on the whole sequence, and the new state.
:meth:`CMCRNet.stream_spectrum` runs the network that way;
:class:`cmse_speechbrain.streaming.StreamingEnhancer` adds the STFT and the
overlap-add around it.

The network knows nothing of training: it returns the enhanced waveform and,
per CM pass, the two streams and the gate, which the objective of
``cmse_speechbrain.losses`` compares with fixed features of the clean speech
and of the noise.

Authors
 * cmse-speechbrain contributors 2026
"""

import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from cmse_speechbrain.collaboration import (  # noqa: F401 (re-exported)
    CollaborationModule,
    ContrastiveAttention,
    InteractiveAttention,
    SelfAttentionBottleneck,
    attention_mask,
    matched_control_width,
    windowed_mean,
)
from cmse_speechbrain.dsp import compressed_spectrum, stft_pair
from cmse_speechbrain.init_record import record_init


def time_padding(time_kernel, causal):
    """Frames of padding (past, future) that keep the frame count of a time
    convolution: all in the past when causal, centred otherwise (an even
    kernel puts the extra frame in the past).

    Example
    -------
    >>> time_padding(2, causal=True), time_padding(3, causal=False)
    ((1, 0), (1, 1))
    """
    if time_kernel < 1:
        raise ValueError(f"time_kernel must be >= 1, got {time_kernel}")
    future = 0 if causal else (time_kernel - 1) // 2
    return time_kernel - 1 - future, future


class EncoderBlock(nn.Module):
    """2-D convolution block: Conv2d, BatchNorm, ELU.

    The frequency axis has kernel 3 and stride 2; the time axis has kernel
    ``time_kernel`` and stride 1, padded so that the frame count is kept:
    causal (past frames only, as in the authors' code, kernel 2) or centred
    (``causal=False``: ``(time_kernel - 1) // 2`` future frames).

    Arguments
    ---------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    time_kernel : int
        Kernel size along time.
    causal : bool
        If True, no output frame depends on a later input frame.

    Example
    -------
    >>> block = EncoderBlock(3, 16).eval()
    >>> x = torch.rand(1, 3, 257, 10)
    >>> block(x).shape
    torch.Size([1, 16, 128, 10])
    >>> first, state = block.stream(x[..., :6], [])
    >>> second, state = block.stream(x[..., 6:], state)
    >>> torch.allclose(torch.cat([first, second], -1), block(x), atol=1e-6)
    True
    """

    def __init__(self, in_channels, out_channels, time_kernel=2, causal=True):
        super().__init__()
        self.padding = time_padding(time_kernel, causal)
        self.conv = nn.Conv2d(
            in_channels, out_channels, (3, time_kernel), stride=(2, 1)
        )
        self.norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.ELU()

    def forward(self, x):
        """Maps [B, C, F, T] to [B, C', F', T]."""
        x = F.pad(x, (self.padding[0], self.padding[1]))
        return self.activation(self.norm(self.conv(x)))

    @torch.jit.export
    def stream(
        self, x, state: List[torch.Tensor]
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """New frames [B, C, F, n] of a stream -> [B, C', F', n] and the new
        state (the last ``time_kernel - 1`` input frames; an empty list at
        the start of a stream: zeros, as the offline padding)."""
        x, state = _with_past_frames(x, state, self.padding)
        return self.activation(self.norm(self.conv(x))), state


class DecoderBlock(nn.Module):
    """Transposed 2-D convolution block, the mirror of EncoderBlock.

    The transposed convolution makes ``T + time_kernel - 1`` frames; the
    frames kept are those of the encoder's alignment (causal: the first
    ``T``; centred: the middle ``T``).

    Arguments
    ---------
    in_channels : int
        Input channels (decoder features and gated skip, concatenated).
    out_channels : int
        Output channels.
    freq_padding : int
        Extra output row along frequency (0 or 1) to reach the encoder size.
    last : bool
        If True, no normalisation and no activation (the output spectrum).
    time_kernel : int
        Kernel size along time.
    causal : bool
        If True, no output frame depends on a later input frame.

    Example
    -------
    >>> block = DecoderBlock(
    ...     32, 2, freq_padding=0, last=True, time_kernel=3, causal=False
    ... )
    >>> block(torch.rand(1, 32, 128, 10)).shape
    torch.Size([1, 2, 257, 10])
    >>> causal = DecoderBlock(32, 16, freq_padding=1).eval()
    >>> x = torch.rand(1, 32, 128, 10)
    >>> first, state = causal.stream(x[..., :3], [])
    >>> second, state = causal.stream(x[..., 3:], state)
    >>> torch.allclose(torch.cat([first, second], -1), causal(x), atol=1e-6)
    True
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        freq_padding=0,
        last=False,
        time_kernel=2,
        causal=True,
    ):
        super().__init__()
        self.padding = time_padding(time_kernel, causal)
        self.conv = nn.ConvTranspose2d(
            in_channels,
            out_channels,
            (3, time_kernel),
            stride=(2, 1),
            output_padding=(freq_padding, 0),
        )
        self.norm = nn.Identity() if last else nn.BatchNorm2d(out_channels)
        self.activation = nn.Identity() if last else nn.ELU()

    def forward(self, x):
        """Maps [B, C, F, T] to [B, C', 2F+1(+1), T]."""
        return self._output(x, self.padding[1], x.shape[-1])

    @torch.jit.export
    def stream(
        self, x, state: List[torch.Tensor]
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """New frames [B, C, F, n] of a stream -> [B, C', 2F+1(+1), n] and
        the new state (the last ``time_kernel - 1`` input frames)."""
        frames = x.shape[-1]
        x, state = _with_past_frames(x, state, self.padding)
        # the new frames follow the past ones
        return self._output(x, self.padding[0], frames), state

    def _output(self, x, start: int, frames: int):
        # output frame t + past of the transposed conv is aligned with input
        # t: keep ``frames`` of them from input frame ``start`` on
        x = self.conv(x)[..., start : start + frames]
        return self.activation(self.norm(x))


def _with_past_frames(
    x, state: List[torch.Tensor], padding: Tuple[int, int]
) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """A causal convolution's input on a stream: its past input frames
    (``state``, zeros at the start) before the new frames ``x`` [..., n];
    returns it and the new state."""
    past, future = padding
    if future:
        raise ValueError("a centred (non-causal) convolution cannot stream")
    if len(state) > 0:
        x = torch.cat([state[0], x], dim=-1)
    else:
        x = F.pad(x, (past, 0))
    return x, [x[..., x.shape[-1] - past :]]


class AttentionGate(nn.Module):
    """Gates an encoder skip connection by the decoder features.

    ``skip * sigmoid(conv(relu(conv(skip) + conv(decoder))))`` with 1x1
    convolutions, as in the authors' CRC-Net code.

    Arguments
    ---------
    channels : int
        Channels of the skip and of the decoder features.

    Example
    -------
    >>> gate = AttentionGate(16)
    >>> skip, dec = torch.rand(1, 16, 63, 5), torch.rand(1, 16, 63, 5)
    >>> gate(skip, dec).shape
    torch.Size([1, 16, 63, 5])
    """

    def __init__(self, channels):
        super().__init__()
        self.skip_proj = nn.Conv2d(channels, channels, 1)
        self.decoder_proj = nn.Conv2d(channels, channels, 1)
        self.score = nn.Conv2d(channels, channels, 1)

    def forward(self, skip, decoder):
        """Returns the gated skip features."""
        mix = F.relu(self.skip_proj(skip) + self.decoder_proj(decoder))
        return skip * torch.sigmoid(self.score(mix))


LEVEL_FLOOR = 1e-6  # input level of digital silence, in spectrum units


def check_whole(name, value, low, high):
    """Refuses a setting that is not a whole number in [low, high], naming it.

    Example
    -------
    >>> check_whole("hop_length", 256, 1, 256)
    >>> check_whole("sample_rate", 16000.5, 1000, 768000)
    Traceback (most recent call last):
     ...
    ValueError: sample_rate must be a whole number from 1000 to 768000, got 16000.5
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise ValueError(
            f"{name} must be a whole number from {low} to {high}, got {value!r}"
        )


def spectrum_level(spec, causal=False, eps=LEVEL_FLOOR, past_power=None, past_frames=0):
    """Level of a spectrum: root mean power per bin, over the utterance or,
    when causal, over the frames up to each frame.

    Arguments
    ---------
    spec : torch.Tensor
        [B, 2, F, T] (real, imaginary).
    causal : bool
        If True, frame ``t`` uses frames ``0 .. t`` only (a running mean).
    eps : float
        Floor of the level (silence), in spectrum units.
    past_power : torch.Tensor, optional
        Causal only: the summed power [B] of the frames before ``spec`` (a
        stream's earlier blocks, ``past_frames`` of them).
    past_frames : int
        Causal only: how many frames ``past_power`` sums.

    Returns
    -------
    torch.Tensor
        [B, 1, 1, 1] (utterance) or [B, 1, 1, T] (causal).

    Example
    -------
    >>> spec = torch.ones(1, 2, 3, 4)
    >>> spectrum_level(spec).flatten().tolist()
    [1.4142135381698608]
    >>> spec[..., 2:] = 0.0
    >>> [round(v, 3) for v in spectrum_level(spec, causal=True).flatten().tolist()]
    [1.414, 1.414, 1.155, 1.0]
    """
    power = spec.pow(2).sum(dim=1).mean(dim=1)  # [B, T]
    if causal:
        total = power.cumsum(dim=1)
        if past_power is not None:
            total = past_power[:, None] + total
        steps = torch.arange(
            1, power.shape[1] + 1, device=power.device, dtype=power.dtype
        )
        power = total / (steps + past_frames)
    else:
        power = power.mean(dim=1, keepdim=True)
    return torch.sqrt(power + eps**2)[:, None, None, :]


def compressed_input(spec, level, compression=0.3):
    """The network's input: the level-normalised spectrum with its magnitude
    compressed, as real, imaginary and magnitude channels.

    ``X / level`` is compressed to ``|X/level|^c e^{j angle X}``; the three
    channels are its real part, imaginary part and magnitude ``|X/level|^c``.

    Arguments
    ---------
    spec : torch.Tensor
        [B, 2, F, T].
    level : torch.Tensor
        Broadcastable to [B, 1, 1, T] (see :func:`spectrum_level`).
    compression : float
        Exponent ``c`` (1: no compression).

    Returns
    -------
    torch.Tensor
        [B, 3, F, T].

    Example
    -------
    >>> spec = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    >>> compressed_input(spec, torch.ones(1, 1, 1, 1), 0.5).flatten().tolist()
    [1.3416407108306885, 1.7888543605804443, 2.2360680103302]
    """
    magnitude, complex_spec = compressed_spectrum(
        spec / level, compression, dim=1, eps=1e-12
    )
    return torch.cat([complex_spec, magnitude.unsqueeze(1)], dim=1)


class CMCRNet(nn.Module):
    """The CMCR-Net enhancer: waveform in, enhanced waveform out.

    The network sees the level-normalised, power-law compressed spectrum
    (:func:`compressed_input`: real, imaginary and magnitude channels of
    ``|X/level|^c e^{j angle X}``) and predicts a complex mask that is
    applied to the noisy spectrum itself, so the output is at the input's
    level and the same whatever the input gain (this project's choice; the
    authors' code feeds the raw spectrum).

    Arguments
    ---------
    sample_rate : int
        Sampling rate of the waveforms.
    n_fft : int
        FFT size (also the window length): 512 in the paper's code.
    hop_length : int
        Hop size in samples: 256 in the paper's code.
    channels : list of int
        Encoder channels, one block each: [16, 32, 64, 128, 256] in the
        paper's code.
    use_cm : bool
        If False, the bottleneck is passed through unchanged (the baseline
        CRN of the ablation), or through the control below.
    d_model : int
        Size of the CM streams (64 in the CRC-Net code; 128 here by default).
    nhead : int
        Attention heads in the CM.
    cm_repeats : int
        Passes of the shared CM block (3 in the CRC-Net code).
    output_type : str
        ``"complex_mask"`` (default): the decoder outputs a complex ratio
        mask, bounded by ``mask_bound * tanh(|m|)`` in magnitude, applied to
        the noisy spectrum; it starts near identity. ``"mapping"``: the
        decoder outputs the (level-normalised) spectrum itself (the CRC-Net
        code maps the spectrum).
    mask_bound : float
        Upper bound of the mask magnitude for ``"complex_mask"`` (> 1).
    causal : bool
        If True, nothing looks at future frames: the convolutions pad the
        past only, the CM attention is causal and the input level is a
        running mean. The STFT frame still looks 32 ms ahead.
    attention_window : int, optional
        With ``causal``: each CM attention (and the selector's pooling)
        spans only the last ``attention_window`` frames, so that every
        output frame depends on a bounded past (what
        :class:`cmse_speechbrain.streaming.StreamingEnhancer` needs).
        None (default): all past frames (causal) or all frames.
    lookahead_frames : int
        With ``causal``: future frames each CM attention may also see
        (adds ``lookahead_frames * hop_length`` samples of latency per
        attention layer; 0 by default, the only value streaming supports).
    time_kernel : int
        Kernel size of the encoder/decoder convolutions along time: 3 (the
        shipped model and ``hparams/common/cmcr_net.yaml``; centred, one
        frame of context each side, when not causal); the authors' causal
        code uses 2 (``hparams/cmse_causal.yaml``). Causal models look
        ``time_kernel - 1`` frames back.
    input_compression : float
        Exponent of the input magnitude compression (1: none).
    control_width : int, optional
        Ablation control (with ``use_cm=False``): a plain
        :class:`SelfAttentionBottleneck` of this width where the CM would be
        (:func:`matched_control_width` gives the CM's parameter count).
        Not streamable. None (default): no control.

    Example
    -------
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2)
    >>> noisy = torch.rand(2, 8000) - 0.5
    >>> enhanced, aux = model(noisy)
    >>> enhanced.shape, len(aux["streams"]), aux["streams"][0][2].shape
    (torch.Size([2, 8000]), 3, torch.Size([2, 32, 16]))
    >>> model.eval()(3 * noisy)[0].allclose(3 * model(noisy)[0], atol=1e-5)
    True
    >>> baseline = CMCRNet(channels=[4, 8, 8, 8, 8], use_cm=False)
    >>> baseline(noisy)[1]["streams"]
    []
    """

    @record_init
    def __init__(
        self,
        sample_rate=16000,
        n_fft=512,
        hop_length=256,
        channels=(16, 32, 64, 128, 256),
        use_cm=True,
        d_model=128,
        nhead=4,
        cm_repeats=3,
        output_type="complex_mask",
        mask_bound=2.0,
        causal=False,
        attention_window=None,
        lookahead_frames=0,
        time_kernel=3,
        input_compression=0.3,
        control_width=None,
    ):
        super().__init__()
        if use_cm and control_width:
            raise ValueError("control_width replaces the CM: it needs use_cm=False")
        if output_type not in ("mapping", "complex_mask"):
            raise ValueError(
                f"output_type must be 'mapping' or 'complex_mask', got {output_type!r}"
            )
        self.output_type = output_type
        self.mask_bound = mask_bound
        self.causal = causal
        self.attention_window = attention_window
        self.lookahead_frames = lookahead_frames
        self.time_kernel = time_kernel
        self.input_compression = input_compression
        check_whole("sample_rate", sample_rate, 1000, 768000)
        check_whole("n_fft", n_fft, 16, 65536)
        # overlap-add needs overlap
        check_whole("hop_length", hop_length, 1, n_fft // 2)
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.stft, self.istft = stft_pair(sample_rate, n_fft, hop_length)
        freqs = [n_fft // 2 + 1]
        for _ in channels:
            freqs.append((freqs[-1] - 3) // 2 + 1)
            if freqs[-1] < 1:
                raise ValueError(f"n_fft={n_fft} too small for {len(channels)} blocks")
        in_channels = [3] + list(channels[:-1])
        self.encoder = nn.ModuleList(
            EncoderBlock(cin, cout, time_kernel, causal)
            for cin, cout in zip(in_channels, channels)
        )
        self.gates = nn.ModuleList(AttentionGate(c) for c in channels)
        self.decoder = nn.ModuleList()
        for i in reversed(range(len(channels))):
            unpadded = (freqs[i + 1] - 1) * 2 + 3
            self.decoder.append(
                DecoderBlock(
                    2 * channels[i],
                    2 if i == 0 else in_channels[i],
                    freq_padding=freqs[i] - unpadded,
                    last=(i == 0),
                    time_kernel=time_kernel,
                    causal=causal,
                )
            )
        if output_type == "complex_mask":
            # Start near the identity mask (output = noisy input): the last
            # layer's weights are scaled down and its bias gives |mask| = 1.
            last = self.decoder[-1].conv
            with torch.no_grad():
                last.weight.mul_(0.01)
                last.bias.copy_(torch.tensor([math.atanh(1.0 / mask_bound), 0.0]))
        bottleneck_size = channels[-1] * freqs[-1]
        self.cm = (
            CollaborationModule(
                bottleneck_size,
                d_model,
                nhead,
                cm_repeats,
                causal,
                attention_window,
                lookahead_frames,
            )
            if use_cm
            else None
        )
        self.control = (
            SelfAttentionBottleneck(
                bottleneck_size, control_width, nhead, cm_repeats, causal
            )
            if control_width
            else None
        )

    def _spectrum(self, wavs):
        # STFT [B, T, F, 2] -> network layout [B, 2, F, T]
        return self.stft(wavs).permute(0, 3, 2, 1)

    @staticmethod
    def _run(block, x, past, new_state):
        # a block offline (past None) or on a stream: ``past`` iterates over
        # the stream's per-block states (exhausted: a new stream)
        if past is None:
            return block(x)
        x, block_state = block.stream(x, next(past, []))
        new_state.append(block_state)
        return x

    def _encode(self, x, past=None, new_state=None):
        skips = []
        for block in self.encoder:
            x = self._run(block, x, past, new_state)
            skips.append(x)
        return x, skips

    @staticmethod
    def _frames(x):
        # [B, C, F, T] -> [B, T, C*F]
        batch, channels, freqs, time = x.shape
        return x.permute(0, 3, 1, 2).reshape(batch, time, channels * freqs)

    def forward(self, wavs, lengths=None):
        """Enhances a batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Noisy waveforms [B, samples].
        lengths : torch.Tensor, optional
            Relative lengths (unused: every operation is frame-local or
            attends over the padded batch, and the input level counts the
            padding as silence; kept for SpeechBrain interfaces).

        Returns
        -------
        enhanced : torch.Tensor
            Enhanced waveforms [B, samples].
        aux : dict
            ``"streams"``: list of (relevant, irrelevant, gate)
            [B, T, d_model] per CM pass (empty without CM); ``"spectrum"``:
            the enhanced spectrum [B, T, F, 2].
        """
        spec = self._spectrum(wavs)
        enhanced, streams = self.enhance_spectrum(spec)
        enhanced_spec = enhanced.permute(0, 3, 2, 1)
        enhanced = self.istft(enhanced_spec, sig_length=wavs.shape[-1])
        return enhanced, {"streams": streams, "spectrum": enhanced_spec}

    def input_level(self, spec):
        """The level the input is normalised by (see :func:`spectrum_level`)."""
        return spectrum_level(spec, causal=self.causal)

    def enhance_spectrum(self, spec, level=None):
        """The network between STFT and iSTFT (what is exported).

        Arguments
        ---------
        spec : torch.Tensor
            Noisy spectrum [B, 2, F, T] (real, imaginary).
        level : torch.Tensor, optional
            Input level (default: :meth:`input_level` of ``spec``; a
            streaming caller passes its running level).

        Returns
        -------
        enhanced : torch.Tensor
            Enhanced spectrum [B, 2, F, T].
        streams : list
            (relevant, irrelevant, gate) [B, T, d_model] per CM pass.
        """
        if level is None:
            level = self.input_level(spec)
        enhanced, streams, _ = self._network(spec, level, None)
        return enhanced, streams

    def stream_spectrum(self, spec, level, state):
        """:meth:`enhance_spectrum` on the next frames of a stream.

        The model must be causal with a finite ``attention_window`` (or no
        CM) and no look-ahead; each block keeps the past frames it needs.

        Arguments
        ---------
        spec : torch.Tensor
            The stream's next frames of noisy spectrum [B, 2, F, n].
        level : torch.Tensor
            Their input level [B, 1, 1, n] (the running level of the whole
            stream so far, see :func:`spectrum_level`).
        state : list
            The state returned by the previous call (an empty list at the
            start of a stream): per block, in the order they run (encoder,
            CM, decoder), the past frames it needs.

        Returns
        -------
        enhanced : torch.Tensor
            Enhanced spectrum of the new frames [B, 2, F, n], equal to those
            of :meth:`enhance_spectrum` on the whole stream.
        state : list
            The state for the next call.

        Example
        -------
        >>> model = CMCRNet(channels=[4, 8], d_model=8, nhead=2, causal=True,
        ...                 attention_window=4).eval()
        >>> spec = model.stft(torch.rand(1, 4096)).permute(0, 3, 2, 1)
        >>> level = model.input_level(spec)
        >>> first, state = model.stream_spectrum(spec[..., :7], level[..., :7], [])
        >>> rest, state = model.stream_spectrum(spec[..., 7:], level[..., 7:], state)
        >>> offline, _ = model.enhance_spectrum(spec)
        >>> torch.allclose(torch.cat([first, rest], -1), offline, atol=1e-5)
        True
        """
        enhanced, _, state = self._network(spec, level, iter(state))
        return enhanced, state

    def _network(self, spec, level, past):
        # the network on the whole sequence (past None) or on the next
        # frames of a stream (past: iterator over the per-block states)
        new_state = []
        x, skips = self._encode(
            compressed_input(spec, level, self.input_compression), past, new_state
        )
        streams = []
        bottleneck = self.cm if self.cm is not None else self.control
        if bottleneck is not None:
            batch, channels, freqs, time = x.shape
            if past is None:
                refined, streams = bottleneck(self._frames(x))
            else:
                refined = self._run(bottleneck, self._frames(x), past, new_state)
            x = refined.view(batch, time, channels, freqs).permute(0, 2, 3, 1)
        x = self._decode(x, skips, past, new_state)
        return self.apply_output(x, spec, level), streams, new_state

    def _decode(self, x, skips, past=None, new_state=None):
        for block, gate, skip in zip(
            self.decoder, reversed(self.gates), reversed(skips)
        ):
            x = self._run(block, torch.cat([x, gate(skip, x)], dim=1), past, new_state)
        return x

    def apply_output(self, x, spec, level):
        """Turns the decoder output [B, 2, F, T] into the enhanced spectrum."""
        if self.output_type == "mapping":
            return x * level
        magnitude = torch.sqrt(x.pow(2).sum(dim=1, keepdim=True) + 1e-8)
        x = x * (self.mask_bound * torch.tanh(magnitude) / magnitude)
        real = x[:, 0] * spec[:, 0] - x[:, 1] * spec[:, 1]
        imag = x[:, 0] * spec[:, 1] + x[:, 1] * spec[:, 0]
        return torch.stack([real, imag], dim=1)

    def receptive_field_frames(self):
        """How many past frames an output frame depends on (None: unbounded).

        Each causal convolution (encoder and decoder) reaches
        ``time_kernel - 1`` frames back; in each CM pass the contrastive
        attention, the interactive attention and the selector's pooling each
        reach ``attention_window - 1`` frames back. The input level is a
        running mean over all past frames: it is not counted here (it
        rescales, it does not mix frames).

        Example
        -------
        >>> CMCRNet(channels=[4, 8], d_model=8, nhead=2, causal=True, time_kernel=2,
        ...         attention_window=4).receptive_field_frames()
        31
        """
        if self.control is not None or (
            self.cm is not None and (not self.causal or self.attention_window is None)
        ):
            return None
        past = 2 * len(self.encoder) * (self.time_kernel - 1)
        if self.cm is not None:
            past += 3 * self.cm.repeats * (self.attention_window - 1)
        return past
