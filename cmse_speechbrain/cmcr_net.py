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
  (learnable correlation of the two streams).

The network knows nothing of training: it returns the enhanced waveform and,
per CM pass, the two streams and the gate, which the objective of
``cmse_speechbrain.losses`` compares with fixed features of the clean speech
and of the noise.

Authors
 * cmse-speechbrain contributors 2026
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain.processing.features import ISTFT, STFT

from cmse_speechbrain.init_record import record_init


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
    stft = STFT(sample_rate, win_length=win_ms, hop_length=hop_ms, n_fft=n_fft,
                window_fn=torch.hamming_window)
    istft = ISTFT(sample_rate, n_fft=n_fft, win_length=win_ms, hop_length=hop_ms,
                  window_fn=torch.hamming_window)
    return stft, istft


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
    >>> block = EncoderBlock(3, 16)
    >>> block(torch.rand(1, 3, 257, 10)).shape
    torch.Size([1, 16, 128, 10])
    """

    def __init__(self, in_channels, out_channels, time_kernel=2, causal=True):
        super().__init__()
        self.padding = time_padding(time_kernel, causal)
        self.conv = nn.Conv2d(in_channels, out_channels, (3, time_kernel), stride=(2, 1))
        self.norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.ELU()

    def forward(self, x):
        """Maps [B, C, F, T] to [B, C', F', T]."""
        x = F.pad(x, (self.padding[0], self.padding[1]))
        return self.activation(self.norm(self.conv(x)))


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
    >>> block = DecoderBlock(32, 2, freq_padding=0, last=True, time_kernel=3, causal=False)
    >>> block(torch.rand(1, 32, 128, 10)).shape
    torch.Size([1, 2, 257, 10])
    """

    def __init__(self, in_channels, out_channels, freq_padding=0, last=False,
                 time_kernel=2, causal=True):
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
        frames = x.shape[-1]
        # output frame t + past of the transposed conv is aligned with input t
        x = self.conv(x)[..., self.padding[1] : self.padding[1] + frames]
        return self.activation(self.norm(x))


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


def _split_heads(x, nhead):
    batch, time, dim = x.shape
    return x.view(batch, time, nhead, dim // nhead).transpose(1, 2)


def _merge_heads(x):
    batch, nhead, time, dim = x.shape
    return x.transpose(1, 2).reshape(batch, time, nhead * dim)


def _attend(query, key, value, nhead, causal, mask=None):
    out = F.scaled_dot_product_attention(
        _split_heads(query, nhead),
        _split_heads(key, nhead),
        _split_heads(value, nhead),
        attn_mask=mask,
        is_causal=causal and mask is None,
    )
    return _merge_heads(out)


def attention_mask(
    query_start, num_queries, key_start, num_keys, window=None, lookahead=0,
    device=None,
):
    """Which keys each query may attend to, for a causal windowed attention.

    Query frame ``t`` sees key frames ``s`` with
    ``t - window < s <= t + lookahead`` (no lower bound if ``window`` is
    None). Queries are frames ``query_start ...``, keys ``key_start ...``.

    Arguments
    ---------
    query_start, num_queries : int
        First frame index and number of the queries.
    key_start, num_keys : int
        First frame index and number of the keys.
    window : int, optional
        Past frames seen, the current one included.
    lookahead : int
        Future frames seen.
    device : torch.device, optional
        Device of the mask.

    Returns
    -------
    torch.Tensor
        Boolean [num_queries, num_keys], True where attention is allowed.

    Example
    -------
    >>> attention_mask(0, 4, 0, 4, window=2).int()
    tensor([[1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 1, 1]], dtype=torch.int32)
    """
    queries = torch.arange(num_queries, device=device)[:, None] + query_start
    keys = torch.arange(num_keys, device=device)[None, :] + key_start
    allowed = keys <= queries + lookahead
    if window is not None:
        allowed = allowed & (keys > queries - window)
    return allowed


def _windowed_attend(query, key, value, nhead, window, lookahead, block=512):
    # Causal windowed attention over a whole sequence, in blocks of queries
    # so that memory stays linear in the number of frames.
    frames = query.shape[1]
    if window is None or frames <= block:
        mask = attention_mask(
            0, frames, 0, frames, window, lookahead, query.device
        )
        return _attend(query, key, value, nhead, False, mask)
    outputs = []
    for start in range(0, frames, block):
        stop = min(start + block, frames)
        first, last = max(0, start - window + 1), min(frames, stop + lookahead)
        mask = attention_mask(
            start, stop - start, first, last - first, window, lookahead,
            query.device,
        )
        outputs.append(
            _attend(
                query[:, start:stop], key[:, first:last],
                value[:, first:last], nhead, False, mask,
            )
        )
    return torch.cat(outputs, dim=1)


def windowed_mean(x, window=None, lookahead=0):
    """Mean over each frame's attention span, ``t - window < s <= t + lookahead``.

    Arguments
    ---------
    x : torch.Tensor
        [B, T, D].
    window : int, optional
        Past frames, the current one included (None: all past frames).
    lookahead : int
        Future frames.

    Returns
    -------
    torch.Tensor
        [B, T, D].

    Example
    -------
    >>> windowed_mean(torch.tensor([[[1.0], [3.0], [5.0]]]), window=2)[0, :, 0]
    tensor([1., 2., 4.])
    """
    frames = x.shape[1]
    steps = torch.arange(frames, device=x.device)
    if window is None:
        last = (steps + lookahead).clamp(max=frames - 1)
        sums = x.cumsum(dim=1)[:, last]
        counts = last + 1
    else:
        span = window + lookahead
        padded = F.pad(x.transpose(1, 2), (window - 1, lookahead))
        sums = (F.avg_pool1d(padded, span, stride=1) * span).transpose(1, 2)
        counts = (steps + lookahead).clamp(max=frames - 1) - (
            steps - window + 1
        ).clamp(min=0) + 1
    return sums / counts[None, :, None].to(x.dtype)


class _FrameAttention(nn.Module):
    """Base of the CM attentions: full, causal, or causal windowed."""

    def _setup_span(self, nhead, causal, window, lookahead):
        if (window is not None or lookahead) and not causal:
            raise ValueError("attention_window/lookahead_frames need causal=True")
        if window is not None and window < 1:
            raise ValueError(f"attention_window must be >= 1, got {window}")
        self.nhead = nhead
        self.causal = causal
        self.window = window
        self.lookahead = lookahead

    def _attention(self, query, key, value):
        if self.causal and (self.window is not None or self.lookahead):
            return _windowed_attend(
                query, key, value, self.nhead, self.window, self.lookahead
            )
        return _attend(query, key, value, self.nhead, self.causal)


class ContrastiveAttention(_FrameAttention):
    """Splits frame features into speech-relevant and speech-irrelevant streams.

    Queries, keys and values are linear projections of the frame features.
    A gate ``z = sigmoid(MLP([q, k]))`` (the authors' "local" block) is a
    learned soft mask: the relevant stream is self-attention over frames
    with the gated query and value ``(z q, k, z v)``, the irrelevant stream
    uses the complement ``((1 - z) q, k, (1 - z) v)``. Gating the values as
    well as the queries (the CRC-Net code gates the queries only) is this
    project's choice: it makes the two streams a soft partition of the
    values. The split is learned with the contrastive loss
    ``cmse_speechbrain.losses.StreamContrastiveLoss``.

    Arguments
    ---------
    input_size : int
        Size of the input frame features.
    d_model : int
        Size of the projected features and of the streams.
    nhead : int
        Attention heads (must divide ``d_model``).
    causal : bool
        If True, each frame attends to itself and the past only.
    window : int, optional
        With ``causal``: each frame attends to the last ``window`` frames
        (itself included) only; None: to all past frames.
    lookahead : int
        With ``causal``: future frames each frame may also attend to.

    Example
    -------
    >>> attention = ContrastiveAttention(64, d_model=32, nhead=4)
    >>> relevant, irrelevant, gate = attention(torch.rand(2, 10, 64))
    >>> relevant.shape, irrelevant.shape, gate.shape
    (torch.Size([2, 10, 32]), torch.Size([2, 10, 32]), torch.Size([2, 10, 32]))
    """

    def __init__(
        self, input_size, d_model=128, nhead=4, causal=False, window=None,
        lookahead=0,
    ):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model={d_model} not divisible by nhead={nhead}")
        self._setup_span(nhead, causal, window, lookahead)
        self.query = nn.Linear(input_size, d_model)
        self.key = nn.Linear(input_size, d_model)
        self.value = nn.Linear(input_size, d_model)
        self.gate = nn.Sequential(
            nn.Linear(2 * d_model, d_model),
            nn.ReLU(),
            nn.Linear(d_model, d_model),
            nn.Sigmoid(),
        )

    def forward(self, x):
        """Returns (relevant, irrelevant, gate), each [B, T, d_model]."""
        query, key, value = self.query(x), self.key(x), self.value(x)
        gate = self.gate(torch.cat([query, key], dim=-1))
        relevant = self._attention(gate * query, key, gate * value)
        irrelevant = self._attention((1 - gate) * query, key, (1 - gate) * value)
        return relevant, irrelevant, gate


class InteractiveAttention(_FrameAttention):
    """Learnable, self-adaptive correlation between the two streams.

    Two steps:

    1. Cross-attention both ways with residual and LayerNorm: the relevant
       stream queries the irrelevant one and vice versa (this project's
       reading of "interactive"; the CRC-Net code has step 2 only).
    2. Selective fusion weights (selective-kernel style, as in the CRC-Net
       code): the two streams are summed and pooled over time, a shared MLP
       (d -> 2d -> 2d) gives one logit per stream and channel, and a softmax
       across the two streams weights each of them. With ``causal=True`` the
       pooling is a running mean over past frames (over the attention span
       when ``window`` or ``lookahead`` is set).

    Arguments
    ---------
    d_model : int
        Size of the streams.
    nhead : int
        Attention heads for the cross-attention.
    causal : bool
        If True, nothing looks at future frames.
    window : int, optional
        With ``causal``: attention and pooling span the last ``window``
        frames only.
    lookahead : int
        With ``causal``: future frames in the attention and pooling span.

    Example
    -------
    >>> interact = InteractiveAttention(32, nhead=4)
    >>> relevant, irrelevant = torch.rand(2, 10, 32), torch.rand(2, 10, 32)
    >>> weighted_relevant, weighted_irrelevant = interact(relevant, irrelevant)
    >>> weighted_relevant.shape
    torch.Size([2, 10, 32])
    """

    def __init__(self, d_model=128, nhead=4, causal=False, window=None, lookahead=0):
        super().__init__()
        self._setup_span(nhead, causal, window, lookahead)
        self.rel_query = nn.Linear(d_model, d_model)
        self.irr_query = nn.Linear(d_model, d_model)
        self.rel_kv = nn.Linear(d_model, 2 * d_model)
        self.irr_kv = nn.Linear(d_model, 2 * d_model)
        self.rel_norm = nn.LayerNorm(d_model)
        self.irr_norm = nn.LayerNorm(d_model)
        self.selector = nn.Sequential(
            nn.Linear(d_model, 2 * d_model),
            nn.ReLU(),
            nn.Linear(2 * d_model, 2 * d_model),
        )

    def forward(self, relevant, irrelevant):
        """Returns both streams, correlated and weighted, [B, T, d_model]."""
        rel_key, rel_value = self.rel_kv(relevant).chunk(2, dim=-1)
        irr_key, irr_value = self.irr_kv(irrelevant).chunk(2, dim=-1)
        relevant = self.rel_norm(
            relevant
            + self._attention(self.rel_query(relevant), irr_key, irr_value)
        )
        irrelevant = self.irr_norm(
            irrelevant
            + self._attention(self.irr_query(irrelevant), rel_key, rel_value)
        )
        summed = relevant + irrelevant
        if self.causal and (self.window is not None or self.lookahead):
            pooled = windowed_mean(summed, self.window, self.lookahead)
        elif self.causal:
            steps = torch.arange(1, summed.shape[1] + 1, device=summed.device)
            pooled = summed.cumsum(dim=1) / steps[None, :, None]
        else:
            pooled = summed.mean(dim=1, keepdim=True)
        return self.select(relevant, irrelevant, pooled)

    def select(self, relevant, irrelevant, pooled):
        """Weights the two streams by the selector's softmax on ``pooled``."""
        logits = self.selector(pooled)
        weights = torch.softmax(
            logits.view(*logits.shape[:2], 2, -1), dim=2
        )
        return relevant * weights[:, :, 0], irrelevant * weights[:, :, 1]


class CollaborationModule(nn.Module):
    """Contrastive attention + interactive attention, applied repeatedly.

    One block, applied ``repeats`` times with shared weights (as in the
    CRC-Net code, which applies it 3 times). In each pass the two weighted
    streams are each concatenated with the (projected) block input and
    mapped back to the input size by a path of their own; the two paths are
    summed and added to the input with a LayerNorm residual.

    Arguments
    ---------
    input_size : int
        Size of the frame features (channels x frequency of the bottleneck).
    d_model : int
        Size of the streams.
    nhead : int
        Attention heads.
    repeats : int
        How many times the shared block is applied.
    causal : bool
        If True, no frame sees the future.
    window : int, optional
        With ``causal``: attention span of the last ``window`` frames.
    lookahead : int
        With ``causal``: future frames in the attention span.

    Example
    -------
    >>> cm = CollaborationModule(64, d_model=32, nhead=4, repeats=2)
    >>> out, streams = cm(torch.rand(2, 10, 64))
    >>> out.shape, len(streams), streams[0][0].shape
    (torch.Size([2, 10, 64]), 2, torch.Size([2, 10, 32]))
    """

    def __init__(
        self, input_size, d_model=128, nhead=4, repeats=3, causal=False,
        window=None, lookahead=0,
    ):
        super().__init__()
        self.repeats = repeats
        self.contrastive = ContrastiveAttention(
            input_size, d_model, nhead, causal, window, lookahead
        )
        self.interactive = InteractiveAttention(
            d_model, nhead, causal, window, lookahead
        )
        self.input_proj = nn.Linear(input_size, d_model)
        self.relevant_path = nn.Linear(2 * d_model, input_size)
        self.irrelevant_path = nn.Linear(2 * d_model, input_size)
        self.norm = nn.LayerNorm(input_size)

    def forward(self, x):
        """Returns the refined features [B, T, input_size] and, per pass,
        the (relevant, irrelevant, gate) tensors [B, T, d_model]."""
        streams = []
        for _ in range(self.repeats):
            relevant, irrelevant, gate = self.contrastive(x)
            streams.append((relevant, irrelevant, gate))
            relevant, irrelevant = self.interactive(relevant, irrelevant)
            x = self.fuse(x, relevant, irrelevant)
        return x, streams

    def fuse(self, x, relevant, irrelevant):
        """One pass's output: both paths summed, residual, LayerNorm."""
        block_input = self.input_proj(x)
        fused = self.relevant_path(
            torch.cat([relevant, block_input], dim=-1)
        ) + self.irrelevant_path(torch.cat([irrelevant, block_input], dim=-1))
        return self.norm(x + fused)


class SelfAttentionBottleneck(_FrameAttention):
    """Ablation control for the CM: a plain self-attention bottleneck.

    The same place in the network, the same residual LayerNorm at the input
    size and the same weight sharing over ``repeats`` passes as
    :class:`CollaborationModule`, but one stream and no gate, no split and
    no stream loss: per pass, a projection to ``d_model``, multi-head
    self-attention and a feed-forward layer (4x wide), each with residual
    and LayerNorm, and a projection back. With ``d_model`` from
    :func:`matched_control_width` it has about the CM's parameters, so that
    an ablation measures the CM's design rather than its extra capacity.

    Arguments
    ---------
    input_size : int
        Size of the frame features (channels x frequency of the bottleneck).
    d_model : int
        Width of the attention and feed-forward layers.
    nhead : int
        Attention heads (must divide ``d_model``).
    repeats : int
        How many times the shared block is applied.
    causal : bool
        If True, each frame attends to itself and the past only.

    Example
    -------
    >>> control = SelfAttentionBottleneck(64, d_model=32, nhead=4, repeats=2)
    >>> out, streams = control(torch.rand(2, 10, 64))
    >>> out.shape, streams
    (torch.Size([2, 10, 64]), [])
    >>> control.features.shape  # the last pass's attended features
    torch.Size([2, 10, 32])
    """

    def __init__(self, input_size, d_model=128, nhead=4, repeats=3, causal=False):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model={d_model} not divisible by nhead={nhead}")
        self._setup_span(nhead, causal, None, 0)
        self.repeats = repeats
        self.input_proj = nn.Linear(input_size, d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attention_out = nn.Linear(d_model, d_model)
        self.attention_norm = nn.LayerNorm(d_model)
        self.feedforward = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.ReLU(), nn.Linear(4 * d_model, d_model)
        )
        self.feedforward_norm = nn.LayerNorm(d_model)
        self.output_proj = nn.Linear(d_model, input_size)
        self.norm = nn.LayerNorm(input_size)
        self.features = None

    def forward(self, x):
        """Returns the refined features [B, T, input_size] and no streams
        (the last pass's attended features stay in ``self.features``, for
        diagnostics)."""
        for _ in range(self.repeats):
            hidden = self.input_proj(x)
            query, key, value = self.qkv(hidden).chunk(3, dim=-1)
            hidden = self.attention_norm(
                hidden + self.attention_out(self._attention(query, key, value))
            )
            hidden = self.feedforward_norm(hidden + self.feedforward(hidden))
            self.features = hidden.detach()
            x = self.norm(x + self.output_proj(hidden))
        return x, []


def matched_control_width(input_size, d_model, nhead=4):
    """Width of :class:`SelfAttentionBottleneck` whose parameter count is
    closest to that of a :class:`CollaborationModule` (a multiple of
    ``nhead``).

    Example
    -------
    >>> width = matched_control_width(896, 64)
    >>> count = lambda m: sum(p.numel() for p in m.parameters())
    >>> cm = count(CollaborationModule(896, 64, 4))
    >>> abs(count(SelfAttentionBottleneck(896, width, 4)) - cm) / cm < 0.02
    True
    """
    target = sum(p.numel() for p in CollaborationModule(input_size, d_model, nhead).parameters())

    def control_parameters(width):  # projections in/out, q/k/v/out, 4x FFN, norms
        return 2 * input_size * width + 3 * input_size + 12 * width**2 + 14 * width

    widths = range(nhead, 8 * d_model + 1, nhead)
    return min(widths, key=lambda width: abs(control_parameters(width) - target))


LEVEL_FLOOR = 1e-6  # input level of digital silence, in spectrum units


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
        steps = torch.arange(1, power.shape[1] + 1, device=power.device, dtype=power.dtype)
        power = total / (steps + past_frames)
    else:
        power = power.mean(dim=1, keepdim=True)
    return torch.sqrt(power + eps**2)[:, None, None, :]


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
    magnitude, complex_spec = compressed_spectrum(spec / level, compression, dim=1, eps=1e-12)
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
        Kernel size of the encoder/decoder convolutions along time (2 in the
        authors' causal code). Non-causal models centre it.
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
        time_kernel=2,
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
                last.bias.copy_(
                    torch.tensor([math.atanh(1.0 / mask_bound), 0.0])
                )
        bottleneck_size = channels[-1] * freqs[-1]
        self.cm = (
            CollaborationModule(
                bottleneck_size, d_model, nhead, cm_repeats, causal,
                attention_window, lookahead_frames,
            )
            if use_cm
            else None
        )
        self.control = (
            SelfAttentionBottleneck(bottleneck_size, control_width, nhead, cm_repeats, causal)
            if control_width
            else None
        )

    def _spectrum(self, wavs):
        # STFT [B, T, F, 2] -> network layout [B, 2, F, T]
        return self.stft(wavs).permute(0, 3, 2, 1)

    def _encode(self, x):
        skips = []
        for block in self.encoder:
            x = block(x)
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
        x, skips = self._encode(compressed_input(spec, level, self.input_compression))
        streams = []
        bottleneck = self.cm if self.cm is not None else self.control
        if bottleneck is not None:
            batch, channels, freqs, time = x.shape
            refined, streams = bottleneck(self._frames(x))
            x = refined.view(batch, time, channels, freqs).permute(0, 2, 3, 1)
        x = self._decode(x, skips)
        return self.apply_output(x, spec, level), streams

    def _decode(self, x, skips):
        for block, gate, skip in zip(
            self.decoder, reversed(self.gates), reversed(skips)
        ):
            x = block(torch.cat([x, gate(skip, x)], dim=1))
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
        >>> CMCRNet(channels=[4, 8], d_model=8, nhead=2, causal=True,
        ...         attention_window=4).receptive_field_frames()
        31
        """
        if self.control is not None or (self.cm is not None and (
            not self.causal or self.attention_window is None
        )):
            return None
        past = 2 * len(self.encoder) * (self.time_kernel - 1)
        if self.cm is not None:
            past += 3 * self.cm.repeats * (self.attention_window - 1)
        return past
