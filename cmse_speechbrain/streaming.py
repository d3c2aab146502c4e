"""Block-by-block (streaming) enhancement with a causal, windowed CMCR-Net.

:class:`StreamingEnhancer` takes audio in blocks of any size (one sample, a
hop, a second...) and returns the enhanced samples as soon as they are
final. It carries real per-layer state, so each STFT frame is computed once:

* the STFT input: the samples of the frame not yet complete;
* the input level: the running sum of the frames' power (the causal model
  normalises its input by the running mean power, see
  :func:`cmse_speechbrain.cmcr_net.spectrum_level`);
* each causal convolution (encoder and decoder): its previous input frame;
* each CM pass: the keys and values of its attentions and the selector's
  pooled features for the last ``attention_window - 1`` frames;
* the iSTFT: the overlap-add and window-envelope tails.

Per STFT frame the work is small and the cost is mostly the number of
operations, so the network runs as :class:`StreamingCore`, compiled with
TorchScript: BatchNorm folded into the convolutions, the linear maps that
share an input fused, each CM pass's caches kept in one fixed-size tensor.

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

import warnings
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from cmse_speechbrain.cmcr_net import CollaborationModule, compressed_input, spectrum_level


class StreamingEnhancer:
    """Enhances a stream in blocks of any size with a causal CMCR-Net.

    Arguments
    ---------
    model : cmse_speechbrain.cmcr_net.CMCRNet
        A model built with ``causal=True``, a finite ``attention_window`` (or
        ``use_cm=False``) and ``lookahead_frames=0``. It is put in eval mode.
    batch_size : int
        Number of parallel streams (blocks are [batch_size, samples]).
    script : bool
        Compile the per-frame network with TorchScript (faster per frame).

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

    def __init__(self, model, batch_size=1, script=True):
        if not model.causal:
            raise ValueError("streaming needs a causal model (causal=True)")
        if model.lookahead_frames:
            raise ValueError("streaming supports lookahead_frames=0 only")
        if getattr(model, "control", None) is not None:
            raise ValueError("the self-attention control (control_width) is not streamable")
        if model.cm is not None and model.attention_window is None:
            raise ValueError(
                "streaming needs a finite attention_window (bounded past)"
            )
        if model.time_kernel != 2:
            raise ValueError(
                f"streaming supports time_kernel=2 only, got {model.time_kernel}"
            )
        self.model = model.eval()
        self.batch_size = batch_size
        self.n_fft = model.n_fft
        self.hop = model.hop_length
        self.window = model.stft.window.clone()
        self.core = StreamingCore(model)
        if script:
            with warnings.catch_warnings():  # torch.jit is deprecated in 2.14
                warnings.simplefilter("ignore", FutureWarning)
                self.core = torch.jit.script(self.core)
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
        self.conv_state, self.cm_state = self.core.initial_state(batch)
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
        features = compressed_input(spec, level, self.model.input_compression)
        enhanced, self.conv_state, self.cm_state = self.core(
            spec, features, level, self.conv_state, self.cm_state, self.frames
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
        level = spectrum_level(spec, causal=True, past_power=self.power_sum,
                               past_frames=self.frames)
        self.power_sum = self.power_sum + spec.pow(2).sum(dim=1).mean(dim=1).sum(dim=1)
        return level

    def _overlap_add(self, enhanced):
        complex_spec = torch.complex(enhanced[:, 0], enhanced[:, 1])
        frames = torch.fft.irfft(complex_spec.transpose(1, 2), n=self.n_fft)
        frames = frames * self.window
        count = frames.shape[1]
        total = (count - 1) * self.hop + self.n_fft
        signal = F.fold(
            frames.transpose(1, 2), (1, total), (1, self.n_fft),
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


def _fold_batchnorm(weight, bias, norm, out_dim):
    # eval-mode BatchNorm after a convolution, folded into its weights
    if isinstance(norm, nn.Identity):
        return weight.clone(), bias.clone()
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shape = [1] * weight.dim()
    shape[out_dim] = -1
    return (
        weight * scale.view(shape),
        (bias - norm.running_mean) * scale + norm.bias,
    )


class StreamingCore(nn.Module):
    """The causal CMCR-Net network on new STFT frames, with explicit state.

    Arguments
    ---------
    model : cmse_speechbrain.cmcr_net.CMCRNet
        A causal model with a finite ``attention_window`` (or no CM); its
        weights are copied (BatchNorm folded, shared-input maps fused).

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8], d_model=8, nhead=2, causal=True,
    ...                 attention_window=4).eval()
    >>> core = StreamingCore(model)
    >>> conv_state, cm_state = core.initial_state(1)
    >>> spec = model._spectrum(torch.rand(1, 2048))
    >>> level = model.input_level(spec)
    >>> features = compressed_input(spec, level, model.input_compression)
    >>> out, conv_state, cm_state = core(spec, features, level, conv_state, cm_state, 0)
    >>> torch.allclose(out, model.enhance_spectrum(spec)[0], atol=1e-5)
    True
    """

    dec_out_channels: List[int]
    dec_out_freqs: List[int]
    dec_activation: List[bool]

    def __init__(self, model):
        super().__init__()
        model = model.eval()
        with torch.no_grad():
            self.enc_weight = nn.ParameterList()
            self.enc_bias = nn.ParameterList()
            for block in model.encoder:
                weight, bias = _fold_batchnorm(
                    block.conv.weight, block.conv.bias, block.norm, 0
                )
                self.enc_weight.append(nn.Parameter(weight, requires_grad=False))
                self.enc_bias.append(nn.Parameter(bias, requires_grad=False))
            # gates in decoder order; skip and decoder projections fused
            gates = list(reversed(model.gates))
            self.gate_weight = nn.ParameterList(
                nn.Parameter(
                    torch.cat([g.skip_proj.weight, g.decoder_proj.weight], 1),
                    requires_grad=False,
                )
                for g in gates
            )
            self.gate_bias = nn.ParameterList(
                nn.Parameter(g.skip_proj.bias + g.decoder_proj.bias, requires_grad=False)
                for g in gates
            )
            self.score_weight = nn.ParameterList(
                nn.Parameter(g.score.weight.clone(), requires_grad=False) for g in gates
            )
            self.score_bias = nn.ParameterList(
                nn.Parameter(g.score.bias.clone(), requires_grad=False) for g in gates
            )
            # transposed convolutions: [(current, previous) x C_in, C_out x 3]
            self.dec_weight = nn.ParameterList()
            self.dec_bias = nn.ParameterList()
            self.dec_out_channels = []
            self.dec_out_freqs = []
            self.dec_activation = []
            for block in model.decoder:
                weight, bias = _fold_batchnorm(
                    block.conv.weight, block.conv.bias, block.norm, 1
                )
                stacked = torch.cat([weight[..., 0], weight[..., 1]], dim=0)
                self.dec_weight.append(
                    nn.Parameter(stacked.flatten(1).contiguous(), requires_grad=False)
                )
                self.dec_bias.append(nn.Parameter(bias, requires_grad=False))
                self.dec_out_channels.append(block.conv.out_channels)
                self.dec_out_freqs.append(block.conv.output_padding[0])
                self.dec_activation.append(not isinstance(block.activation, nn.Identity))
            self.use_cm = model.cm is not None
            self.repeats = model.cm.repeats if self.use_cm else 0
            self.history = (model.attention_window or 1) - 1
            self.window = model.attention_window or 1
            # without CM, an unused stand-in keeps the compiled code typed
            cm = model.cm if self.use_cm else CollaborationModule(2, 2, 1, 1, True, 1)
            con, inter = cm.contrastive, cm.interactive
            self.d_model = con.query.out_features
            self.nhead = con.nhead
            maps = [con.query, con.key, con.value, cm.input_proj]
            self.frame_map = nn.Linear(1, 1)
            self.frame_map.weight = nn.Parameter(torch.cat([m.weight for m in maps]))
            self.frame_map.bias = nn.Parameter(torch.cat([m.bias for m in maps]))
            self.gate = con.gate
            self.rel_map = nn.Linear(1, 1)
            self.rel_map.weight = nn.Parameter(
                torch.cat([inter.rel_query.weight, inter.rel_kv.weight])
            )
            self.rel_map.bias = nn.Parameter(
                torch.cat([inter.rel_query.bias, inter.rel_kv.bias])
            )
            self.irr_map = nn.Linear(1, 1)
            self.irr_map.weight = nn.Parameter(
                torch.cat([inter.irr_query.weight, inter.irr_kv.weight])
            )
            self.irr_map.bias = nn.Parameter(
                torch.cat([inter.irr_query.bias, inter.irr_kv.bias])
            )
            self.rel_norm, self.irr_norm = inter.rel_norm, inter.irr_norm
            self.selector = inter.selector
            self.relevant_path = cm.relevant_path
            self.irrelevant_path = cm.irrelevant_path
            self.norm = cm.norm
        self.mask_bound = model.mask_bound
        self.complex_mask = model.output_type == "complex_mask"
        self.requires_grad_(False)

    @torch.jit.export
    def initial_state(self, batch: int) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Zero state: previous frames of every causal convolution, and per
        CM pass the last ``attention_window - 1`` frames of its 8 caches."""
        conv_state: List[torch.Tensor] = []
        cm_state: List[torch.Tensor] = []
        for _ in range(self.repeats):
            cm_state.append(torch.zeros(batch, self.history, 8 * self.d_model))
        return conv_state, cm_state

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, dim = x.shape
        return x.view(batch, time, self.nhead, dim // self.nhead).transpose(1, 2)

    def _attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(
            self._heads(query), self._heads(key), self._heads(value), attn_mask=mask
        )
        batch, nhead, time, dim = out.shape
        return out.transpose(1, 2).reshape(batch, time, nhead * dim)

    def _collaboration(self, x: torch.Tensor, cm_state: List[torch.Tensor],
                       frames: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        count = x.shape[1]
        history, window, d = self.history, self.window, self.d_model
        # key frame j of [history + new] is frame frames - history + j
        queries = torch.arange(count)[:, None] + frames
        keys = torch.arange(history + count)[None, :] + frames - history
        allowed = (keys >= 0) & (keys <= queries) & (keys > queries - window)
        mask = torch.zeros(allowed.shape, dtype=x.dtype)
        mask = mask.masked_fill(~allowed, float("-inf"))
        steps = torch.arange(frames, frames + count, dtype=x.dtype)
        counts = (steps + 1).clamp(max=float(window))[None, :, None]
        new_state: List[torch.Tensor] = []
        for state in cm_state:
            query, key, value, block_input = self.frame_map(x).chunk(4, dim=-1)
            gate = self.gate(torch.cat([query, key], dim=-1))
            first = torch.cat(
                [state[..., : 3 * d], torch.cat([key, gate * value, (1 - gate) * value], -1)],
                dim=1,
            )
            keys_all = first[..., :d]
            relevant = self._attend(gate * query, keys_all, first[..., d : 2 * d], mask)
            irrelevant = self._attend(
                (1 - gate) * query, keys_all, first[..., 2 * d : 3 * d], mask
            )
            rel_query, rel_kv = self.rel_map(relevant).split([d, 2 * d], dim=-1)
            irr_query, irr_kv = self.irr_map(irrelevant).split([d, 2 * d], dim=-1)
            second = torch.cat(
                [state[..., 3 * d : 7 * d], torch.cat([rel_kv, irr_kv], -1)], dim=1
            )
            relevant = self.rel_norm(
                relevant
                + self._attend(rel_query, second[..., 2 * d : 3 * d],
                               second[..., 3 * d : 4 * d], mask)
            )
            irrelevant = self.irr_norm(
                irrelevant
                + self._attend(irr_query, second[..., :d], second[..., d : 2 * d], mask)
            )
            summed = torch.cat([state[..., 7 * d :], relevant + irrelevant], dim=1)
            # mean over each new frame's window (history is zero before frame 0)
            pooled = F.avg_pool1d(summed.transpose(1, 2), window, stride=1)
            pooled = pooled.transpose(1, 2) * window / counts
            logits = self.selector(pooled)
            weights = torch.softmax(logits.view(logits.shape[0], count, 2, d), dim=2)
            relevant = relevant * weights[:, :, 0]
            irrelevant = irrelevant * weights[:, :, 1]
            fused = self.relevant_path(torch.cat([relevant, block_input], dim=-1)) + \
                self.irrelevant_path(torch.cat([irrelevant, block_input], dim=-1))
            x = self.norm(x + fused)
            joined = torch.cat([first, second, summed], dim=-1)
            new_state.append(joined[:, joined.shape[1] - history :])
        return x, new_state

    def forward(self, spec: torch.Tensor, features: torch.Tensor, input_level: torch.Tensor,
                conv_state: List[torch.Tensor], cm_state: List[torch.Tensor], frames: int
                ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        """New frames: noisy spectrum [B, 2, F, n], the network's input
        features [B, 3, F, n] and input level [B, 1, 1, n] -> enhanced
        frames, updated state.

        ``frames`` counts the frames already processed (0 for a new stream;
        an empty ``conv_state`` means zeros).
        """
        start = len(conv_state) == 0
        new_conv: List[torch.Tensor] = []
        x = features
        skips: List[torch.Tensor] = []
        index = 0
        for weight, bias in zip(self.enc_weight, self.enc_bias):
            previous = torch.zeros_like(x[..., :1]) if start else conv_state[index]
            new_conv.append(x[..., -1:])
            x = F.elu(F.conv2d(torch.cat([previous, x], -1), weight, bias, (2, 1)))
            skips.append(x)
            index += 1
        if self.use_cm:
            batch, channels, freqs, time = x.shape
            frames_in = x.permute(0, 3, 1, 2).reshape(batch, time, channels * freqs)
            refined, cm_state = self._collaboration(frames_in, cm_state, frames)
            x = refined.view(batch, time, channels, freqs).permute(0, 2, 3, 1)
        level = 0
        for gate_weight, gate_bias, score_weight, score_bias, dec_weight, dec_bias in zip(
            self.gate_weight, self.gate_bias, self.score_weight, self.score_bias,
            self.dec_weight, self.dec_bias,
        ):
            skip = skips[len(skips) - 1 - level]
            mix = F.relu(F.conv2d(torch.cat([skip, x], 1), gate_weight, gate_bias))
            gated = skip * torch.sigmoid(F.conv2d(mix, score_weight, score_bias))
            current = torch.cat([x, gated], dim=1)
            previous = torch.zeros_like(current[..., :1]) if start else conv_state[index]
            new_conv.append(current[..., -1:])
            shifted = torch.cat([previous, current[..., :-1]], dim=-1)
            batch, channels, freqs, count = current.shape
            both = torch.cat([current, shifted], dim=1).permute(0, 3, 2, 1)
            columns = torch.matmul(both.reshape(batch * count, freqs, 2 * channels), dec_weight)
            out_channels = self.dec_out_channels[level]
            out_freqs = (freqs - 1) * 2 + 3 + self.dec_out_freqs[level]
            out = F.fold(columns.transpose(1, 2), [out_freqs, 1], [3, 1], stride=[2, 1])
            x = out.view(batch, count, out_channels, out_freqs).permute(0, 2, 3, 1)
            x = x + dec_bias[None, :, None, None]
            if self.dec_activation[level]:
                x = F.elu(x)
            index += 1
            level += 1
        if not self.complex_mask:
            x = x * input_level
        else:
            magnitude = torch.sqrt(x.pow(2).sum(dim=1, keepdim=True) + 1e-8)
            x = x * (self.mask_bound * torch.tanh(magnitude) / magnitude)
            real = x[:, 0] * spec[:, 0] - x[:, 1] * spec[:, 1]
            imag = x[:, 0] * spec[:, 1] + x[:, 1] * spec[:, 0]
            x = torch.stack([real, imag], dim=1)
        return x, new_conv, cm_state

