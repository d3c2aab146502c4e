"""The collaboration module (CM) of CMCR-Net and its attentions.

One CM block, applied ``repeats`` times with shared weights, is made of a
:class:`ContrastiveAttention` (split of the bottleneck frames into
speech-relevant and speech-irrelevant streams) and an
:class:`InteractiveAttention` (learnable correlation of the two streams);
:class:`SelfAttentionBottleneck` is the ablation's plain control of the
same size (:func:`matched_control_width`).

Every attention is over frames: full, causal, or causal over a window of
the last ``window`` frames. Causal windowed modules also run on a stream:
``stream(x, state)`` takes new frames and the keys, values and pooled
features of the last ``window - 1`` frames before them (a list of tensors,
empty at the start of a stream) and returns the same outputs as ``forward``
on the whole sequence, for the new frames, and the updated state.

Authors
 * cmse-speechbrain contributors 2026
"""

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def _split_heads(x, nhead: int):
    batch, time, dim = x.shape
    return x.view(batch, time, nhead, dim // nhead).transpose(1, 2)


def _merge_heads(x):
    batch, nhead, time, dim = x.shape
    return x.transpose(1, 2).reshape(batch, time, nhead * dim)


def _attend(
    query, key, value, nhead: int, causal: bool, mask: Optional[torch.Tensor] = None
):
    out = F.scaled_dot_product_attention(
        _split_heads(query, nhead),
        _split_heads(key, nhead),
        _split_heads(value, nhead),
        attn_mask=mask,
        is_causal=causal and mask is None,
    )
    return _merge_heads(out)


def attention_mask(
    query_start: int,
    num_queries: int,
    key_start: int,
    num_keys: int,
    window: Optional[int] = None,
    lookahead: int = 0,
    device: Optional[torch.device] = None,
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


def _windowed_attend(
    query,
    key,
    value,
    nhead: int,
    window: Optional[int],
    lookahead: int,
    history: int = 0,
    block: int = 512,
):
    # Causal windowed attention, in blocks of queries so that memory stays
    # linear in the number of frames. The queries are the frames after the
    # first ``history`` keys (a stream's cached frames; 0 offline).
    frames, keys = query.shape[1], key.shape[1]
    # every query sees every key (one new frame of a stream)
    if keys - 1 <= history + lookahead and (
        window is None or history + frames <= window
    ):
        return _attend(query, key, value, nhead, False)
    if window is None or frames <= block:
        mask = attention_mask(history, frames, 0, keys, window, lookahead, query.device)
        return _attend(query, key, value, nhead, False, mask)
    assert window is not None
    outputs: List[torch.Tensor] = []
    for start in range(0, frames, block):
        stop = min(start + block, frames)
        first = max(0, history + start - window + 1)
        last = min(keys, history + stop + lookahead)
        mask = attention_mask(
            history + start,
            stop - start,
            first,
            last - first,
            window,
            lookahead,
            query.device,
        )
        outputs.append(
            _attend(
                query[:, start:stop],
                key[:, first:last],
                value[:, first:last],
                nhead,
                False,
                mask,
            )
        )
    return torch.cat(outputs, dim=1)


def windowed_mean(x, window: Optional[int] = None, lookahead: int = 0):
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
        counts = (
            (steps + lookahead).clamp(max=frames - 1)
            - (steps - window + 1).clamp(min=0)
            + 1
        )
    return sums / counts[None, :, None].to(x.dtype)


def _joined(past: List[torch.Tensor], new: List[torch.Tensor]) -> List[torch.Tensor]:
    # a stream's cached frames followed by the new ones, along time (dim 1)
    return [torch.cat([past[i], new[i]], dim=1) for i in range(len(new))]


class _FrameAttention(nn.Module):
    """Base of the CM attentions: full, causal, or causal windowed."""

    nhead: int
    causal: bool
    window: Optional[int]
    lookahead: int

    def _setup_span(self, nhead, causal, window, lookahead):
        if (window is not None or lookahead) and not causal:
            raise ValueError("attention_window/lookahead_frames need causal=True")
        if window is not None and window < 1:
            raise ValueError(f"attention_window must be >= 1, got {window}")
        self.nhead = nhead
        self.causal = causal
        self.window = window
        self.lookahead = lookahead

    def _attention(self, query, key, value, history: int = 0):
        # the queries are the frames after the first ``history`` keys
        if self.causal and (self.window is not None or self.lookahead):
            return _windowed_attend(
                query,
                key,
                value,
                self.nhead,
                self.window,
                self.lookahead,
                history,
            )
        return _attend(query, key, value, self.nhead, self.causal)

    def _check_streamable(self):
        if not self.causal or self.window is None or self.lookahead:
            raise ValueError(
                "streaming needs causal=True, a finite attention_window and "
                "lookahead_frames=0"
            )

    def _history(
        self, state: List[torch.Tensor]
    ) -> Tuple[Optional[List[torch.Tensor]], int]:
        # cached frames of a stream's state (None: a new stream)
        self._check_streamable()
        if len(state) == 0:
            return None, 0
        return state, state[0].shape[1]

    def _keep(self, frames: List[torch.Tensor]) -> List[torch.Tensor]:
        # the frames a stream keeps for the next call: the last window - 1
        window = self.window
        assert window is not None
        return [x[:, max(0, x.shape[1] - window + 1) :] for x in frames]


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

    On a stream (causal, windowed), frame by frame, the same outputs:

    >>> attention = ContrastiveAttention(64, 32, 4, causal=True, window=3).eval()
    >>> x, state, outputs = torch.rand(2, 10, 64), [], []
    >>> for frame in x.split(1, dim=1):
    ...     *out, state = attention.stream(frame, state)
    ...     outputs.append(out[0])
    >>> torch.allclose(torch.cat(outputs, dim=1), attention(x)[0], atol=1e-6)
    True
    >>> [tensor.shape[1] for tensor in state]  # the last window - 1 frames
    [2, 2, 2]
    """

    def __init__(
        self,
        input_size,
        d_model=128,
        nhead=4,
        causal=False,
        window=None,
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
        relevant, irrelevant, gate, _ = self._split(x, None, 0)
        return relevant, irrelevant, gate

    @torch.jit.export
    def stream(
        self, x, state: List[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """New frames [B, n, input_size] of a stream -> (relevant,
        irrelevant, gate) for them and the new state.

        ``state``: the keys and the two gated values of the last
        ``window - 1`` frames (an empty list at the start of a stream)."""
        past, history = self._history(state)
        relevant, irrelevant, gate, keys = self._split(x, past, history)
        return relevant, irrelevant, gate, self._keep(keys)

    def _split(self, x, past: Optional[List[torch.Tensor]], history: int):
        query, key, value = self.query(x), self.key(x), self.value(x)
        gate = self.gate(torch.cat([query, key], dim=-1))
        keys = [key, gate * value, (1 - gate) * value]
        if past is not None:
            keys = _joined(past, keys)
        relevant = self._attention(gate * query, keys[0], keys[1], history)
        irrelevant = self._attention((1 - gate) * query, keys[0], keys[2], history)
        return relevant, irrelevant, gate, keys


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
        relevant, irrelevant, _ = self._correlate(relevant, irrelevant, None, 0)
        summed = relevant + irrelevant
        if self.causal and (self.window is not None or self.lookahead):
            pooled = windowed_mean(summed, self.window, self.lookahead)
        elif self.causal:
            steps = torch.arange(1, summed.shape[1] + 1, device=summed.device)
            pooled = summed.cumsum(dim=1) / steps[None, :, None]
        else:
            pooled = summed.mean(dim=1, keepdim=True)
        return self.select(relevant, irrelevant, pooled)

    @torch.jit.export
    def stream(
        self, relevant, irrelevant, state: List[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """New frames of both streams [B, n, d_model] -> both weighted
        streams for them and the new state.

        ``state``: the keys and values of both cross-attentions and the
        summed streams of the last ``window - 1`` frames (an empty list at
        the start of a stream)."""
        past, history = self._history(state)
        relevant, irrelevant, keys = self._correlate(
            relevant, irrelevant, past, history
        )
        summed = relevant + irrelevant
        if past is not None:
            summed = torch.cat([past[-1], summed], dim=1)
        if relevant.shape[1] == 1:  # one new frame: all cached frames are in its window
            pooled = summed.mean(dim=1, keepdim=True)
        else:
            pooled = windowed_mean(summed, self.window)[:, history:]
        relevant, irrelevant = self.select(relevant, irrelevant, pooled)
        return relevant, irrelevant, self._keep(keys + [summed])

    def _correlate(
        self, relevant, irrelevant, past: Optional[List[torch.Tensor]], history: int
    ):
        # the cross-attentions both ways, with residual and LayerNorm; keys
        # and values: relevant key, relevant value, irrelevant key and value
        keys = list(self.rel_kv(relevant).chunk(2, dim=-1))
        keys += list(self.irr_kv(irrelevant).chunk(2, dim=-1))
        if past is not None:
            keys = _joined(past, keys)
        relevant = self.rel_norm(
            relevant
            + self._attention(self.rel_query(relevant), keys[2], keys[3], history)
        )
        irrelevant = self.irr_norm(
            irrelevant
            + self._attention(self.irr_query(irrelevant), keys[0], keys[1], history)
        )
        return relevant, irrelevant, keys

    def select(self, relevant, irrelevant, pooled):
        """Weights the two streams by the selector's softmax on ``pooled``."""
        logits = self.selector(pooled)
        weights = torch.softmax(
            logits.view(logits.shape[0], logits.shape[1], 2, -1), dim=2
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

    On a stream (causal, windowed), in blocks of frames, the same output:

    >>> cm = CollaborationModule(64, 32, 4, repeats=2, causal=True, window=4).eval()
    >>> x, state, outputs = torch.rand(1, 12, 64), [], []
    >>> for frames in x.split(5, dim=1):
    ...     out, state = cm.stream(frames, state)
    ...     outputs.append(out)
    >>> torch.allclose(torch.cat(outputs, dim=1), cm(x)[0], atol=1e-5)
    True
    """

    def __init__(
        self,
        input_size,
        d_model=128,
        nhead=4,
        repeats=3,
        causal=False,
        window=None,
        lookahead=0,
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
        streams: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for _ in range(self.repeats):
            relevant, irrelevant, gate = self.contrastive(x)
            streams.append((relevant, irrelevant, gate))
            relevant, irrelevant = self.interactive(relevant, irrelevant)
            x = self.fuse(x, relevant, irrelevant)
        return x, streams

    @torch.jit.export
    def stream(
        self, x, state: List[List[torch.Tensor]]
    ) -> Tuple[torch.Tensor, List[List[torch.Tensor]]]:
        """New frames [B, n, input_size] of a stream -> refined frames and
        the new state.

        ``state``: per pass, the states of its contrastive and interactive
        attentions (an empty list at the start of a stream)."""
        new_state: List[List[torch.Tensor]] = []
        for step in range(self.repeats):
            empty: List[torch.Tensor] = []
            started = len(state) > 0
            relevant, irrelevant, _, contrastive_state = self.contrastive.stream(
                x, state[2 * step] if started else empty
            )
            relevant, irrelevant, interactive_state = self.interactive.stream(
                relevant, irrelevant, state[2 * step + 1] if started else empty
            )
            x = self.fuse(x, relevant, irrelevant)
            new_state.append(contrastive_state)
            new_state.append(interactive_state)
        return x, new_state

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
    target = sum(
        p.numel() for p in CollaborationModule(input_size, d_model, nhead).parameters()
    )

    def control_parameters(width):  # projections in/out, q/k/v/out, 4x FFN, norms
        return 2 * input_size * width + 3 * input_size + 12 * width**2 + 14 * width

    widths = range(nhead, 8 * d_model + 1, nhead)
    return min(widths, key=lambda width: abs(control_parameters(width) - target))
