"""The CMCR-Net objective: reconstruction, contrastive regularization and
the stream contrast of the collaboration module, with controlled shares.

* :class:`ReconstructionLoss`: power-law compressed spectrum (magnitude and
  complex) plus a small waveform L1, on signals divided by the noisy
  input's level, so its scale does not depend on the recording level.
* :class:`ContrastiveRegularization` (CR): in a frozen representation space
  the enhanced output is pulled toward the clean speech (positive) and
  pushed from the noisy mixture (negative), per utterance and bounded (see
  the class for why the AECR-Net ratio is not used as is).
* Representations for CR: :class:`RandomConvRepresentation`, a random frozen
  convolutional encoder of the spectrogram (the offline default, as in the
  authors' Selector-Enhancer code), and :class:`SSLRepresentation`, which
  wraps a self-supervised model such as SpeechBrain's wav2vec 2.0 / HuBERT /
  WavLM wrappers (the paper's choice, for users who have the weights);
  :func:`cr_space_representation` also selects a pretrained speaker encoder
  and the encoder of Distill-MOS (distilled from an SSL-based quality model).
* :class:`CurricularNegative`: the authors' curricular CR, the output of a
  model trained without CR as a second, harder negative on a schedule.
* :class:`StreamContrastiveLoss`: the contrastive learning of the
  collaboration module's split (this project's reading of the abstract):
  the relevant stream is tied to the clean speech, the irrelevant stream to
  the noise, in a fixed representation.
* :class:`CMCRObjective`: the three together. The CM and CR terms get a
  stated share of the reconstruction's gradient (measured every few steps),
  switched on after a warm-up; every term is reported by name.

Losses know nothing of the Brain: they take tensors and return tensors.

Authors
 * cmse-speechbrain contributors 2026
"""

import torch
import torch.nn.functional as F
from torch import nn

from cmse_speechbrain.dsp import compressed_spectrum, stft_pair


def _time_mask(lengths, steps, device):
    """[B, steps] float mask from relative lengths (None: all ones)."""
    if lengths is None:
        return None
    valid = torch.round(lengths.to(device) * steps).clamp(min=1)
    return (torch.arange(steps, device=device)[None, :] < valid[:, None]).float()


def _masked_mean(values, lengths=None):
    """Mean of [B, T] values over all valid frames of the batch (scalar)."""
    mask = _time_mask(lengths, values.shape[1], values.device)
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum()


def _frame_mean(values, lengths=None):
    """Per-utterance mean of [B, T] values over the valid frames: [B]."""
    mask = _time_mask(lengths, values.shape[1], values.device)
    if mask is None:
        return values.mean(dim=1)
    return (values * mask).sum(dim=1) / mask.sum(dim=1)


def utterance_l1(a, b, lengths=None):
    """Mean absolute difference per utterance over valid frames (dim 1 is
    time): [B].

    Example
    -------
    >>> a = torch.zeros(2, 4, 3)
    >>> b = torch.ones(2, 4, 3)
    >>> b[1] *= 3.0
    >>> b[:, 2:] = 100.0  # padding, ignored with lengths 0.5
    >>> utterance_l1(a, b, torch.tensor([0.5, 0.5])).tolist()
    [1.0, 3.0]
    """
    return _frame_mean((a - b).abs().flatten(start_dim=2).mean(dim=2), lengths)


def masked_l1(a, b, lengths=None):
    """Mean absolute difference over valid frames (dim 1 is time), all
    utterances weighted by their valid frames.

    Example
    -------
    >>> a = torch.zeros(2, 4, 3)
    >>> b = torch.ones(2, 4, 3)
    >>> b[:, 2:] = 100.0  # padding, ignored with lengths 0.5
    >>> masked_l1(a, b, torch.tensor([0.5, 0.5]))
    tensor(1.)
    """
    return _masked_mean((a - b).abs().flatten(start_dim=2).mean(dim=2), lengths)


def masked_mse(a, b, lengths=None):
    """Mean squared difference over valid frames (dim 1 is time).

    Example
    -------
    >>> masked_mse(torch.zeros(1, 4, 2), torch.ones(1, 4, 2))
    tensor(1.)
    """
    return _masked_mean((a - b).pow(2).flatten(start_dim=2).mean(dim=2), lengths)


def utterance_rms(wavs, lengths=None, eps=1e-5):
    """Root mean square of each waveform over its valid samples: [B].

    Example
    -------
    >>> wavs = torch.tensor([[1.0, -1.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    >>> utterance_rms(wavs, torch.tensor([0.5, 1.0])).tolist()
    [1.0, 2.0]
    """
    power = _frame_mean(wavs.pow(2), lengths)
    return torch.sqrt(power + eps**2)


def _unit_rms(wavs, lengths=None):
    return wavs / utterance_rms(wavs, lengths)[:, None]


def frame_energy(wavs, n_fft, hop_length):
    """Energy of each STFT frame (centred frames, as SpeechBrain's STFT):
    [B, 1 + samples // hop_length].

    Example
    -------
    >>> frame_energy(torch.ones(1, 1024), 512, 256).shape
    torch.Size([1, 5])
    """
    padded = F.pad(wavs.unsqueeze(1), (n_fft // 2, n_fft // 2))
    return F.avg_pool1d(padded.pow(2), n_fft, hop_length).squeeze(1)


def frozen_features(representation, signals, lengths=None):
    """A frozen representation of several batches of waveforms, in one pass
    without gradient (the batches concatenated).

    Arguments
    ---------
    representation : torch.nn.Module
        Maps waveforms [B, samples] (and relative lengths) to a list of
        feature tensors [B, ...]; must treat each utterance on its own.
    signals : list of torch.Tensor
        Waveforms [B, samples] each, all of one shape.
    lengths : torch.Tensor, optional
        Relative lengths [B], the same for every batch.

    Returns
    -------
    list
        Per signal, its list of feature tensors.

    Example
    -------
    >>> rep = RandomConvRepresentation(channels=[4, 8])
    >>> a, b = torch.randn(2, 4000), torch.randn(2, 4000)
    >>> feats_a, feats_b = frozen_features(rep, [a, b])
    >>> torch.allclose(feats_b[1], rep(b)[1], atol=1e-6)
    True
    """
    batch = signals[0].shape[0]
    if lengths is not None:
        lengths = lengths.repeat(len(signals))
    with torch.no_grad():
        feats = representation(torch.cat(signals), lengths)
    return [
        [level[i * batch : (i + 1) * batch] for level in feats]
        for i in range(len(signals))
    ]


class RandomConvRepresentation(nn.Module):
    """A random, frozen convolutional encoder of the compressed spectrogram.

    The offline representation for CR: no download, no training. Its input
    is the power-law compressed magnitude ``|STFT|^compression`` (0.3 here, a
    common choice in SE; the Selector-Enhancer code feeds a spectrogram of
    unstated compression), its layers are the backbone's encoder blocks
    without normalisation (Conv2d kernel (3, 2), stride 2 along frequency,
    ELU), initialised from a fixed seed independent of the global one, so
    every run and every process sees the same network. It has buffers but
    no trainable parameters, and is never checkpointed.

    Arguments
    ---------
    sample_rate : int
        Sampling rate.
    n_fft : int
        FFT size (= window length).
    hop_length : int
        Hop in samples.
    channels : list of int
        Channels of each layer; each layer's output is one feature level.
    compression : float
        Exponent applied to the magnitude.
    seed : int
        Seed of the random weights.

    Example
    -------
    >>> rep = RandomConvRepresentation(channels=[8, 16])
    >>> feats = rep(torch.rand(2, 8000))
    >>> [tuple(f.shape) for f in feats]
    [(2, 32, 8, 128), (2, 32, 16, 63)]
    >>> sum(p.numel() for p in rep.parameters() if p.requires_grad)
    0
    """

    def __init__(
        self,
        sample_rate=16000,
        n_fft=512,
        hop_length=256,
        channels=(16, 32, 64, 128, 256),
        compression=0.3,
        seed=0,
    ):
        super().__init__()
        self.compression = compression
        self.stft, _ = stft_pair(sample_rate, n_fft, hop_length)
        generator = torch.Generator().manual_seed(seed)
        self.layers = nn.ModuleList()
        in_channels = 1
        for out_channels in channels:
            conv = nn.Conv2d(
                in_channels, out_channels, (3, 2), stride=(2, 1), padding=(0, 1)
            )
            bound = (6.0 / (in_channels * 6)) ** 0.5  # He-uniform for ELU
            with torch.no_grad():
                conv.weight.copy_(
                    (torch.rand(conv.weight.shape, generator=generator) * 2 - 1) * bound
                )
                conv.bias.zero_()
            conv.requires_grad_(False)
            self.layers.append(conv)
            in_channels = out_channels

    def train(self, mode=True):
        """Always stays in eval mode (frozen)."""
        return super().train(False)

    def forward(self, wavs, lengths=None):
        """Returns one feature tensor [B, T, C, F] per layer."""
        magnitude, _ = compressed_spectrum(self.stft(wavs), self.compression)
        x = magnitude.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        feats = []
        for conv in self.layers:
            x = F.elu(conv(x)[..., :-1])
            feats.append(x.permute(0, 3, 1, 2))
        return feats


class SSLRepresentation(nn.Module):
    """Hidden layers of a frozen self-supervised speech model, in groups.

    The paper's representation. ``ssl_model`` is one of SpeechBrain's
    wrappers, e.g. ``speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2``
    (also ``hubert.HuBERT``, ``wavlm.WavLM``) built with
    ``output_all_hiddens=True``, or any module whose output is the stacked
    hidden states [layers, B, T, D]. Its ``extract_features`` is called
    directly (the wrappers' ``forward`` with ``freeze=True`` would cut the
    gradient that CR needs through the enhanced signal); its parameters are
    frozen here. The layers are summed in groups, as the CRC-Net code does
    for wav2vec 2.0 Base: groups [[1, 2, 3], [4, 5, 6], [7, 8, 9],
    [10, 11, 12]] (layer 0 is the CNN feature projection).

    Arguments
    ---------
    ssl_model : torch.nn.Module
        The self-supervised model (weights loaded by the user).
    layer_groups : list of list of int
        Hidden-state indices summed into each feature level.

    Example
    -------
    >>> class FakeSSL(torch.nn.Module):  # stands in for a SpeechBrain wrapper
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.proj = torch.nn.Linear(160, 8)
    ...     def extract_features(self, wav, wav_lens=None):
    ...         h = self.proj(wav.view(wav.shape[0], -1, 160))
    ...         return torch.stack([h, h.tanh(), h.relu()])
    >>> rep = SSLRepresentation(FakeSSL(), layer_groups=[[0], [1, 2]])
    >>> [tuple(f.shape) for f in rep(torch.rand(2, 1600))]
    [(2, 10, 8), (2, 10, 8)]
    """

    def __init__(
        self, ssl_model, layer_groups=((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12))
    ):
        super().__init__()
        self.ssl_model = ssl_model
        self.layer_groups = [list(group) for group in layer_groups]
        self.ssl_model.requires_grad_(False)
        self.ssl_model.eval()

    def train(self, mode=True):
        """Always stays in eval mode (frozen)."""
        return super().train(False)

    def forward(self, wavs, lengths=None):
        """Returns one feature tensor [B, T, D] per layer group."""
        if hasattr(self.ssl_model, "extract_features"):
            hiddens = self.ssl_model.extract_features(wavs, lengths)
        else:
            hiddens = self.ssl_model(wavs)
        if isinstance(hiddens, (list, tuple)):
            hiddens = torch.stack(list(hiddens))
        if hiddens.dim() != 4:
            raise ValueError(
                "SSLRepresentation needs all hidden states [layers, B, T, D]: "
                "build the SpeechBrain wrapper with output_all_hiddens=True"
            )
        for group in self.layer_groups:
            if max(group) >= hiddens.shape[0]:
                raise ValueError(
                    f"layer group {group} asks for a layer the model lacks "
                    f"(it has {hiddens.shape[0]} hidden states)"
                )
        return [hiddens[group].sum(dim=0) for group in self.layer_groups]


CR_SPACES = ("random", "speaker", "distillmos")


def cr_space_representation(space, random_representation):
    """The feature space CR is computed in, by name (a YAML switch).

    Arguments
    ---------
    space : str
        ``"random"``: ``random_representation`` (the offline frozen random
        conv encoder, the default); ``"speaker"``: the pretrained speaker
        encoder of :mod:`cmse_speechbrain.speaker_encoder` (needs
        ``pip install resemblyzer``; 4 levels: 3 LSTM layers and the
        projection); ``"distillmos"``: the encoder of Distill-MOS, a
        quality model distilled from a wav2vec 2.0 XLS-R based one
        (:mod:`cmse_speechbrain.distillmos_encoder`; needs
        ``pip install distillmos``; 4 levels: the front end and three
        groups of transformer layers).
    random_representation : torch.nn.Module
        What ``"random"`` returns.

    Returns
    -------
    torch.nn.Module

    Example
    -------
    >>> encoder = RandomConvRepresentation(channels=[8, 16])
    >>> cr_space_representation("random", encoder) is encoder
    True
    """
    if space == "random":
        return random_representation
    if space == "speaker":
        from cmse_speechbrain.speaker_encoder import SpeakerEncoderRepresentation

        return SpeakerEncoderRepresentation(weights="default")
    if space == "distillmos":
        from cmse_speechbrain.distillmos_encoder import DistillMOSRepresentation

        return DistillMOSRepresentation(weights="default")
    raise ValueError(f"cr_space must be one of {CR_SPACES}, got {space!r}")


class ContrastiveRegularization(nn.Module):
    """Contrastive regularization (CR) loss, per utterance and bounded.

    For each utterance and representation layer ``i``, with ``D`` the mean
    absolute difference over valid frames and ``G_i`` the frozen
    representation of a signal scaled to unit RMS::

        d_pos = D(G_i(clean), G_i(enh))    # pull toward the clean speech
        d_neg = D(G_i(noisy), G_i(enh))    # push from the noisy mixture
        d_ref = D(G_i(clean), G_i(noisy))
        CR_i  = d_pos / (d_pos + min(d_neg, push_limit * d_ref) + eps)

    and the loss is the layer-weighted mean over layers, averaged over the
    batch. It is 0 at the clean speech, 1 at the noisy input, about 0.5
    halfway. This project's form, not AECR-Net's ``d_pos / d_neg``, because
    the plain ratio (even with a floor) rewards any move away from the
    noisy input: a half-scaled copy of the input or near-silence scored
    far better than the input itself. Here

    * each signal is at unit RMS before the representation, so a scaled
      copy of the input scores exactly as the input (levels are the
      reconstruction loss's business);
    * the push saturates at ``push_limit * d_ref``: moving away from the
      noisy input by more than a quarter of the way to the clean speech
      earns nothing more, so a far-away output (near-silence, which the
      level normalisation turns into white noise, or the noise alone)
      scores worse than the halfway mixture ``0.5 * (clean + noisy)``
      (the scores of such outputs on real mixtures, and why the limit is
      0.25 and not 0.5: docs/model.md, "What CR scores on real mixtures");
    * the ratio is per utterance, not a ratio of batch means.

    Curricular CR (the authors' ICASSP 2024 follow-up) adds a harder
    negative ``b``, the output of a model trained without CR, with a weight
    ``alpha`` that a schedule moves from 0 (:class:`CurricularNegative`)::

        push = (1 - alpha) * min(d_neg, push_limit * d_ref)
               + alpha * min(D(G_i(b), G_i(enh)), push_limit * D(G_i(clean), G_i(b)))

    The output is then also pushed away from what the model without CR
    produces, by at most a quarter of the way from it to the clean speech.

    Gradient flows through the representation of the enhanced signal only.

    Arguments
    ---------
    representation : torch.nn.Module
        Maps waveforms [B, samples] (and relative lengths) to a list of
        feature tensors [B, T, ...].
    layer_weights : list of float
        One weight per feature level (normalised to sum to one). Defaults:
        1/32, 1/16, 1/8, 1/4, 1 for the random conv encoder
        (Selector-Enhancer, AECR-Net).
    push_limit : float
        Saturation of the push, relative to ``D(clean, noisy)``.
    eps : float
        Added to the denominator.

    Example
    -------
    >>> cr = ContrastiveRegularization(
    ...     RandomConvRepresentation(channels=[8, 16]), layer_weights=[0.5, 1.0]
    ... )
    >>> clean = torch.sin(torch.arange(8000) / 10.0).unsqueeze(0)
    >>> noisy = clean + 0.5 * torch.randn(1, 8000)
    >>> (round(float(cr(clean, clean, noisy)), 4),
    ...  round(float(cr(noisy, clean, noisy)), 4))
    (0.0, 1.0)
    >>> bool(cr(0.5 * noisy, clean, noisy) == cr(noisy, clean, noisy))
    True
    """

    def __init__(
        self,
        representation,
        layer_weights=(1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0),
        push_limit=0.25,
        eps=1e-6,
    ):
        super().__init__()
        self.representation = representation
        self.layer_weights = list(layer_weights)
        self.push_limit = push_limit
        self.eps = eps

    @staticmethod
    def reference_inputs(clean, noisy, lengths=None, hard_negative=None):
        """The signals whose frozen features are the references: clean,
        noisy and (if given) the hard negative, at unit RMS."""
        signals = [clean, noisy] + ([] if hard_negative is None else [hard_negative])
        return [_unit_rms(x, lengths) for x in signals]

    def _push(self, neg, enh, pos, lengths):
        d_neg = utterance_l1(neg, enh, lengths)
        return torch.minimum(d_neg, self.push_limit * utterance_l1(pos, neg, lengths))

    def per_utterance(
        self,
        enhanced,
        clean,
        noisy,
        lengths=None,
        references=None,
        hard_negative=None,
        hard_weight=0.0,
    ):
        """CR of each utterance, [B].

        Arguments
        ---------
        enhanced, clean, noisy : torch.Tensor
            Waveforms [B, samples].
        lengths : torch.Tensor, optional
            Relative lengths [B].
        references : list, optional
            The frozen features of :meth:`reference_inputs` (clean, noisy,
            and the hard negative if one is used), if already computed.
        hard_negative : torch.Tensor, optional
            The second negative [B, samples] (curricular CR).
        hard_weight : float
            Its weight ``alpha`` in the push (0: the noisy input only).
        """
        use_hard = hard_negative is not None and hard_weight > 0
        enhanced_feats = self.representation(_unit_rms(enhanced, lengths), lengths)
        if references is None:
            signals = self.reference_inputs(
                clean, noisy, lengths, hard_negative if use_hard else None
            )
            references = frozen_features(self.representation, signals, lengths)
        if use_hard and len(references) < 3:
            raise ValueError("a hard negative needs its frozen features in references")
        if len(enhanced_feats) != len(self.layer_weights):
            raise ValueError(
                f"{len(self.layer_weights)} layer weights for "
                f"{len(enhanced_feats)} representation layers"
            )
        total = enhanced.new_zeros(enhanced.shape[0])
        for level, (weight, enh) in enumerate(zip(self.layer_weights, enhanced_feats)):
            pos, neg = references[0][level], references[1][level]
            d_pos = utterance_l1(pos, enh, lengths)
            push = self._push(neg, enh, pos, lengths)
            if use_hard:
                hard_push = self._push(references[2][level], enh, pos, lengths)
                push = (1.0 - hard_weight) * push + hard_weight * hard_push
            total = total + weight * d_pos / (d_pos + push + self.eps)
        return total / sum(self.layer_weights)

    def forward(
        self,
        enhanced,
        clean,
        noisy,
        lengths=None,
        references=None,
        hard_negative=None,
        hard_weight=0.0,
    ):
        """Returns the CR loss (scalar) for a batch of waveforms [B, samples]
        (the arguments: see :meth:`per_utterance`)."""
        return self.per_utterance(
            enhanced, clean, noisy, lengths, references, hard_negative, hard_weight
        ).mean()


CR_NEGATIVES = ("noisy", "noisy+baseline")


class CurricularNegative(nn.Module):
    """The harder negative of curricular CR and its schedule.

    The authors' follow-up ("Curricular Contrastive Regularization for
    Speech Enhancement with Self-Supervised Representations", ICASSP 2024)
    keeps the noisy mixture as a negative and adds the output of the model
    trained without CR, with weights that move from the easy negative to
    the hard one over training. Here the hard negative's weight ``alpha``
    (see :class:`ContrastiveRegularization`) is 0 until ``start_steps``,
    then rises linearly to ``final_weight`` over ``ramp_steps`` training
    steps (the objective's step counter). Their paper gives no numbers for
    the schedule; these are this project's choice, set in YAML. The final
    weight is kept low (default 0.25) because the push from the hard
    negative also rewards moving back toward the noisy input: the higher
    the weight, the more an output halfway back to the noisy input scores
    better than the hard negative itself (measured on real mixtures:
    docs/model.md, "Curricular CR").

    The baseline network is frozen (no gradient, eval mode) and is not part
    of this module's state dict: it is rebuilt from its model folder each
    run, not saved in every checkpoint.

    Arguments
    ---------
    negatives : str
        ``"noisy"``: no hard negative (this module then does nothing);
        ``"noisy+baseline"``: the baseline's output as the second negative.
    model : torch.nn.Module or None
        The baseline network, mapping noisy waveforms [B, samples] to the
        enhanced ones (or to a tuple whose first item they are); needed for
        ``"noisy+baseline"``.
    start_steps, ramp_steps : int
        The schedule of the hard negative's weight.
    final_weight : float
        Its weight at the end of the ramp, in [0, 1].

    Example
    -------
    >>> baseline = lambda noisy: 0.5 * noisy
    >>> hard = CurricularNegative(
    ...     "noisy+baseline", baseline, start_steps=10, ramp_steps=10
    ... )
    >>> [hard.weight(step) for step in (0, 10, 15, 20, 100)]
    [0.0, 0.0, 0.125, 0.25, 0.25]
    >>> hard(torch.ones(1, 4)).tolist()
    [[0.5, 0.5, 0.5, 0.5]]
    >>> CurricularNegative("noisy").weight(1000)
    0.0
    """

    def __init__(
        self,
        negatives="noisy",
        model=None,
        start_steps=0,
        ramp_steps=2000,
        final_weight=0.25,
    ):
        super().__init__()
        if negatives not in CR_NEGATIVES:
            raise ValueError(
                f"cr_negatives must be one of {CR_NEGATIVES}, got {negatives!r}"
            )
        if negatives == "noisy+baseline" and model is None:
            raise ValueError(
                "cr_negatives: noisy+baseline needs the model trained without CR: "
                "set cr_baseline_folder to its model folder (cmse-export of its run)"
            )
        if not 0.0 <= final_weight <= 1.0:
            raise ValueError(f"final_weight must be in [0, 1], got {final_weight}")
        self.active = negatives == "noisy+baseline"
        self._model = [model]  # a list: not a submodule, not checkpointed
        if isinstance(model, nn.Module):
            model.requires_grad_(False)
            model.eval()
        self.start_steps, self.ramp_steps = start_steps, ramp_steps
        self.final_weight = final_weight

    def weight(self, step):
        """The hard negative's weight ``alpha`` at a training step."""
        if not self.active or step < self.start_steps:
            return 0.0
        progress = (step - self.start_steps) / max(1, self.ramp_steps)
        return self.final_weight * min(1.0, progress)

    def forward(self, noisy):
        """The baseline's output for a batch of noisy waveforms, no gradient."""
        model = self._model[0]
        if isinstance(model, nn.Module):
            model.to(noisy.device).eval()
        with torch.no_grad():
            out = model(noisy)
        out = out[0] if isinstance(out, (tuple, list)) else out
        if out.dim() == 3:  # [B, 1, samples]
            out = out[:, 0]
        if out.shape[-1] != noisy.shape[-1]:
            out = F.pad(out, (0, max(0, noisy.shape[-1] - out.shape[-1])))[
                ..., : noisy.shape[-1]
            ]
        return out.detach()


class StreamContrastiveLoss(nn.Module):
    """Contrastive loss that teaches the collaboration module which stream
    is speech and which is noise.

    This project's reading of "separates speech-relevant from
    speech-irrelevant features via contrastive learning" (the authors' code
    has no such term). The targets are fixed: frame features of the clean
    speech ``s_t`` and of the noise ``n_t`` (noisy minus clean) in a frozen
    representation (one layer, flattened), both divided by the mixture's
    level so their relative size is kept. A linear read-out ``h`` shared by
    the two streams maps a stream frame into that space. Per CM pass:

    * InfoNCE (cosine similarity, temperature ``tau``) with the relevant
      stream ``h(r_t)`` as anchor, ``s_t`` as positive, and as negatives the
      noise ``n_t`` and the speech at the same frame of every other
      utterance of the batch; over frames where the speech is active.
      The same for the irrelevant stream with ``n_t`` as positive.
    * A decomposition term ``|h(r_t) - s_t|^2 + |h(i_t) - n_t|^2`` relative
      to ``|s_t|^2 + |n_t|^2``, over all frames. The read-out is shared and
      has no bias, so what tells the two streams apart is what the gate
      lets into each: where the speech is silent the relevant stream must
      be empty. A fixed split of the channels, which solved the earlier
      loss of the moving model's own features, does not satisfy it.

    Arguments
    ---------
    representation : torch.nn.Module
        Frozen; maps waveforms to a list of features [B, T, ...] (e.g. the
        CR's :class:`RandomConvRepresentation`, shared).
    stream_size : int
        Size of the CM streams (``d_model``).
    layer : int
        Which representation layer gives the targets.
    temperature : float
        InfoNCE temperature ``tau``.
    decomposition_weight : float
        Weight of the decomposition term.
    active_db : float
        A frame is active when its energy is above the utterance's loudest
        frame by this many dB (negative).
    n_fft, hop_length : int
        Framing of the activity (the model's STFT).

    Example
    -------
    >>> rep = RandomConvRepresentation(channels=[4, 8])
    >>> loss = StreamContrastiveLoss(rep, stream_size=16)
    >>> clean, noise = torch.randn(2, 4000), torch.randn(2, 4000)
    >>> frames = 1 + 4000 // 256
    >>> streams = [(torch.randn(2, frames, 16), torch.randn(2, frames, 16))]
    >>> loss(streams, clean, noise).shape
    torch.Size([])
    """

    def __init__(
        self,
        representation,
        stream_size,
        layer=-1,
        temperature=0.1,
        decomposition_weight=1.0,
        active_db=-40.0,
        n_fft=512,
        hop_length=256,
    ):
        super().__init__()
        self.representation = representation
        self.layer = layer
        self.temperature = temperature
        self.decomposition_weight = decomposition_weight
        self.active_ratio = 10 ** (active_db / 10)
        self.n_fft, self.hop_length = n_fft, hop_length
        with torch.no_grad():
            probe = representation(torch.zeros(1, 4 * n_fft))[layer]
        self.target_size = probe[0, 0].numel()
        self.readout = nn.Linear(stream_size, self.target_size, bias=False)

    @staticmethod
    def target_inputs(clean, noise, lengths=None):
        """The signals whose frozen features are the targets: speech and
        noise divided by the mixture's level."""
        level = utterance_rms(clean + noise, lengths)[:, None]
        return [clean / level, noise / level]

    def targets(self, clean, noise, lengths=None, feats=None):
        """Frozen frame features of speech and noise, [B, T, D] each.
        ``feats``: the representation's features of :meth:`target_inputs`
        (speech, noise), if already computed."""
        if feats is None:
            feats = frozen_features(
                self.representation, self.target_inputs(clean, noise, lengths), lengths
            )
        return tuple(levels[self.layer].flatten(start_dim=2) for levels in feats)

    def _activity(self, wavs, frames):
        energy = frame_energy(wavs, self.n_fft, self.hop_length)[:, :frames]
        loudest = energy.max(dim=1, keepdim=True).values
        return (energy > self.active_ratio * loudest).float()

    def _info_nce(
        self,
        anchor,
        anchor_norm,
        positive,
        positive_norm,
        negative,
        negative_norm,
        weights,
    ):
        # Cosine similarities of the read-out h(x) = W x with targets y, in
        # the stream space: h(x).y = x.(W^T y) and |h(x)| = sqrt(x^T W^T W x)
        # (``positive``, ``negative``: W^T y; ``*_norm``: |y| or |h(x)|,
        # floored at 1e-12 as F.normalize does).
        scale = 1.0 / (anchor_norm[..., None] * self.temperature)
        same = (anchor * positive).sum(-1, keepdim=True) / positive_norm[..., None]
        other_kind = (anchor * negative).sum(-1, keepdim=True) / negative_norm[
            ..., None
        ]
        # the same kind at the same frame of the other utterances
        others = torch.bmm(
            anchor.transpose(0, 1), positive.permute(1, 2, 0)
        )  # [T, B, C]
        others = others.transpose(0, 1) / positive_norm.t()[None] * scale
        diagonal = torch.eye(anchor.shape[0], dtype=torch.bool, device=anchor.device)
        others = others.masked_fill(diagonal[:, None, :], float("-inf"))
        logits = torch.cat([same * scale, other_kind * scale, others], dim=-1)
        per_frame = -torch.log_softmax(logits, dim=-1)[..., 0]
        return (per_frame * weights).sum() / weights.sum().clamp(min=1.0)

    def forward(self, streams, clean, noise, lengths=None, feats=None):
        """Arguments: list of (relevant, irrelevant[, gate]) [B, T, d] per CM
        pass; clean speech and noise waveforms [B, samples]; relative
        lengths [B]; ``feats``: see :meth:`targets`. Returns a scalar.

        The read-out is never applied to the streams: the targets are
        brought into the stream space instead (``W^T s``, ``W^T n``), where
        the similarities and the residuals are the same numbers at a
        fraction of the cost."""
        if not streams:
            raise ValueError("StreamContrastiveLoss needs the CM's streams")
        speech, noise_feats = self.targets(clean, noise, lengths, feats)
        frames = min(speech.shape[1], streams[0][0].shape[1])
        speech, noise_feats = speech[:, :frames], noise_feats[:, :frames]
        valid = _time_mask(lengths, frames, speech.device)
        if valid is None:
            valid = torch.ones(speech.shape[:2], device=speech.device)
        speech_active = self._activity(clean, frames) * valid
        noise_active = self._activity(noise, frames) * valid
        speech_sq, noise_sq = speech.pow(2).sum(-1), noise_feats.pow(2).sum(-1)
        scale = (speech_sq + noise_sq).clamp(min=1e-6)
        speech_norm = speech_sq.sqrt().clamp(min=1e-12)
        noise_norm = noise_sq.sqrt().clamp(min=1e-12)
        weight = self.readout.weight  # [target_size, stream_size]
        speech_w, noise_w = speech @ weight, noise_feats @ weight  # W^T y
        gram = weight.t() @ weight

        def read_out_sq(x):  # |h(x)|^2
            return ((x @ gram) * x).sum(-1)

        total = 0.0
        for relevant, irrelevant, *_ in streams:
            rel, irr = relevant[:, :frames], irrelevant[:, :frames]
            rel_sq, irr_sq = read_out_sq(rel), read_out_sq(irr)
            rel_norm = rel_sq.clamp(min=1e-24).sqrt()
            irr_norm = irr_sq.clamp(min=1e-24).sqrt()
            rel_speech, irr_noise = (rel * speech_w).sum(-1), (irr * noise_w).sum(-1)
            contrast = self._info_nce(
                rel, rel_norm, speech_w, speech_norm, noise_w, noise_norm, speech_active
            )
            contrast = contrast + self._info_nce(
                irr, irr_norm, noise_w, noise_norm, speech_w, speech_norm, noise_active
            )
            # |h(r) - s|^2 + |h(i) - n|^2
            residual = (rel_sq - 2 * rel_speech + speech_sq) + (
                irr_sq - 2 * irr_noise + noise_sq
            )
            decomposition = (residual / scale * valid).sum() / valid.sum()
            total = total + contrast + self.decomposition_weight * decomposition
        return total / len(streams)


class ReconstructionLoss(nn.Module):
    """Compressed-spectrum loss plus a small waveform term.

    Both signals are divided by ``scale`` (per utterance: the noisy
    input's RMS in :class:`CMCRObjective`), so the loss does not grow with
    the recording level (the authors' waveform MSE grows with its square).
    Then, with ``|X|^c`` the power-law compressed magnitude of an STFT
    normalised by its window's energy::

        magnitude_weight * MSE(|E|^c, |C|^c)
        + complex_weight * MSE(|E|^c e^{j angle E}, |C|^c e^{j angle C})
        + waveform_weight * L1(e, c)
        + overestimate_weight * MSE(max(|E|^c - |C|^c, 0), 0)

    The last term (off by default) weighs the bins where the output is
    louder than the clean speech, i.e. residual noise, more than the bins
    where speech is lost: it asks for more suppression at the price of some
    speech distortion.

    Arguments
    ---------
    magnitude_weight, complex_weight, waveform_weight, overestimate_weight : float
        Weights of the terms.
    sample_rate, n_fft, hop_length : int
        STFT of the spectral terms.
    compression : float
        Exponent ``c`` of the magnitude.

    Example
    -------
    >>> loss = ReconstructionLoss()
    >>> clean = torch.randn(2, 8000) * 0.1
    >>> float(loss(clean, clean, torch.ones(2)))
    0.0
    >>> bool(loss(clean * 0.5, clean) > 0)
    True
    >>> bool(torch.isclose(loss(0.5 * clean, clean, scale=torch.ones(2)),
    ...                    loss(5 * clean, 10 * clean, scale=10 * torch.ones(2))))
    True
    >>> terms = ReconstructionLoss(overestimate_weight=1.0).terms
    >>> noise = torch.randn(2, 8000) * 0.03
    >>> # residual noise: penalised
    >>> bool(terms(clean + noise, clean)["overestimate"] > 0)
    True
    >>> # attenuated speech: not this term
    >>> float(terms(0.5 * clean, clean)["overestimate"])
    0.0
    """

    def __init__(
        self,
        magnitude_weight=0.7,
        complex_weight=0.3,
        waveform_weight=0.2,
        sample_rate=16000,
        n_fft=512,
        hop_length=256,
        compression=0.3,
        overestimate_weight=0.0,
    ):
        super().__init__()
        self.overestimate_weight = overestimate_weight
        self.magnitude_weight = magnitude_weight
        self.complex_weight = complex_weight
        self.waveform_weight = waveform_weight
        self.compression = compression
        self.stft, _ = stft_pair(sample_rate, n_fft, hop_length)
        self.spectrum_scale = float(torch.hamming_window(n_fft).pow(2).sum().sqrt())

    def terms(self, enhanced, clean, lengths=None, scale=None):
        """The three terms by name (unweighted)."""
        if scale is not None:
            enhanced, clean = enhanced / scale[:, None], clean / scale[:, None]
        enh_mag, enh_cplx = compressed_spectrum(
            self.stft(enhanced) / self.spectrum_scale, self.compression
        )
        clean_mag, clean_cplx = compressed_spectrum(
            self.stft(clean) / self.spectrum_scale, self.compression
        )
        terms = {
            "magnitude": masked_mse(enh_mag, clean_mag, lengths),
            "complex": masked_mse(enh_cplx, clean_cplx, lengths),
            "waveform": masked_l1(enhanced.unsqueeze(-1), clean.unsqueeze(-1), lengths),
        }
        if self.overestimate_weight:
            excess = F.relu(enh_mag - clean_mag)
            terms["overestimate"] = masked_mse(
                excess, torch.zeros_like(excess), lengths
            )
        return terms

    def combine(self, terms):
        """The weighted sum of :meth:`terms` (scalar)."""
        return (
            self.magnitude_weight * terms["magnitude"]
            + self.complex_weight * terms["complex"]
            + self.waveform_weight * terms["waveform"]
            + self.overestimate_weight * terms.get("overestimate", 0.0)
        )

    def forward(self, enhanced, clean, lengths=None, scale=None):
        """Returns the weighted loss (scalar)."""
        return self.combine(self.terms(enhanced, clean, lengths, scale))


class CMCRObjective(nn.Module):
    """The training objective of CMCR-Net and its ablations.

    ``loss = recon + ramp(step) * (w_cm * cm + w_cr * cr)`` where ``recon``
    is :class:`ReconstructionLoss` on signals divided by the noisy input's
    RMS, ``cm`` the :class:`StreamContrastiveLoss` of the CM streams (if the
    model has a CM and ``cm_share > 0``) and ``cr`` the
    :class:`ContrastiveRegularization` (if ``cr_share > 0``).

    The weights ``w_k`` are not fixed numbers: every ``rebalance_interval``
    training steps :meth:`rebalance` measures the gradient norm of each raw
    term on the model's parameters and sets ``w_k`` so that term ``k``'s
    gradient is ``share_k`` times the reconstruction's (smoothed over
    measurements). The auxiliary terms are off for ``aux_start_steps``, then
    ramp up linearly over ``aux_ramp_steps``. The terms' values and their
    measured gradient shares are returned by name for logging.

    Arguments
    ---------
    reconstruction : ReconstructionLoss
        The reconstruction loss.
    contrastive_regularization : ContrastiveRegularization, optional
        The CR loss.
    stream_contrast : StreamContrastiveLoss, optional
        The CM loss (holds a trainable read-out: put the objective in the
        Brain's ``modules``).
    cr_share, cm_share : float
        Target gradient norm of each term, relative to the reconstruction's.
    aux_start_steps, aux_ramp_steps : int
        Warm-up of the auxiliary terms, in training steps.
    rebalance_interval : int
        Training steps between two gradient measurements.
    rebalance_momentum : float
        Smoothing of the weights across measurements.
    curricular_negative : CurricularNegative, optional
        The hard negative of curricular CR and its schedule.

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> rep = RandomConvRepresentation(channels=[4, 8])
    >>> objective = CMCRObjective(
    ...     ReconstructionLoss(),
    ...     ContrastiveRegularization(rep, [0.5, 1.0]),
    ...     StreamContrastiveLoss(rep, stream_size=16),
    ...     aux_start_steps=0, aux_ramp_steps=0,
    ... )
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2)
    >>> clean = torch.randn(2, 8000) * 0.1
    >>> noisy = clean + 0.05 * torch.randn(2, 8000)
    >>> enhanced, aux = model(noisy)
    >>> loss, terms = objective(enhanced, clean, noisy, None, aux["streams"])
    >>> sorted(terms)
    ['cm', 'complex', 'cr', 'magnitude', 'recon', 'waveform']
    >>> objective.rebalance(terms, model.parameters())  # first: weights measured
    {'cm': 0.0, 'cr': 0.0}
    >>> shares = objective.rebalance(terms, model.parameters())
    >>> [round(v, 6) for v in shares.values()]
    [0.1, 0.1]
    """

    def __init__(
        self,
        reconstruction,
        contrastive_regularization=None,
        stream_contrast=None,
        cr_share=0.1,
        cm_share=0.1,
        aux_start_steps=500,
        aux_ramp_steps=1000,
        rebalance_interval=50,
        rebalance_momentum=0.5,
        curricular_negative=None,
    ):
        super().__init__()
        self.curricular_negative = curricular_negative
        self.reconstruction = reconstruction
        self.contrastive_regularization = contrastive_regularization
        self.stream_contrast = stream_contrast
        self.shares = {"cm": cm_share, "cr": cr_share}
        self.aux_start_steps = aux_start_steps
        self.aux_ramp_steps = aux_ramp_steps
        self.rebalance_interval = rebalance_interval
        self.rebalance_momentum = rebalance_momentum
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("weights", torch.zeros(2))  # cm, cr; 0: not measured

    def ramp(self):
        """Current factor of the auxiliary terms (0 during the warm-up)."""
        step = int(self.step) - self.aux_start_steps
        if step < 0:
            return 0.0
        return min(1.0, (step + 1) / max(1, self.aux_ramp_steps))

    def needs_rebalance(self):
        """True when the weights should be measured at this step."""
        if not any(share > 0 for share in self.shares.values()):
            return False
        return int(self.step) % self.rebalance_interval == 0 or not bool(
            (self.weights > 0).any()
        )

    def forward(self, enhanced, clean, noisy, lengths=None, streams=None):
        """Returns ``(loss, terms)``; ``terms`` maps names to the raw
        (weight-free) terms, still attached to the graph.

        Arguments
        ---------
        enhanced, clean, noisy : torch.Tensor
            Waveforms [B, samples]: output, target, input.
        lengths : torch.Tensor, optional
            Relative lengths [B].
        streams : list, optional
            The model's CM streams (``aux["streams"]``).
        """
        scale = utterance_rms(noisy, lengths)
        terms = self.reconstruction.terms(enhanced, clean, lengths, scale)
        terms["recon"] = loss = self.reconstruction.combine(terms)
        ramp = self.ramp()
        use_cm = (
            self.stream_contrast is not None and self.shares["cm"] > 0 and bool(streams)
        )
        use_cr = self.contrastive_regularization is not None and self.shares["cr"] > 0
        noise = noisy - clean
        references = targets = hard_negative = None
        hard_weight = 0.0
        if use_cr and self.curricular_negative is not None:
            hard_weight = self.curricular_negative.weight(int(self.step))
            if hard_weight > 0:
                hard_negative = self.curricular_negative(noisy)
        # one frozen pass for the CR references and the CM targets
        if (
            use_cm
            and use_cr
            and (
                self.stream_contrast.representation
                is self.contrastive_regularization.representation
            )
        ):
            signals = self.contrastive_regularization.reference_inputs(
                clean, noisy, lengths, hard_negative
            )
            split = len(signals)
            signals += self.stream_contrast.target_inputs(clean, noise, lengths)
            feats = frozen_features(
                self.stream_contrast.representation, signals, lengths
            )
            references, targets = feats[:split], feats[split:]
        if use_cm:
            terms["cm"] = self.stream_contrast(streams, clean, noise, lengths, targets)
            loss = loss + ramp * self.weights[0] * terms["cm"]
        if use_cr:
            terms["cr"] = self.contrastive_regularization(
                enhanced, clean, noisy, lengths, references, hard_negative, hard_weight
            )
            loss = loss + ramp * self.weights[1] * terms["cr"]
        if self.training:
            self.step += 1
        return loss, terms

    def rebalance(self, terms, parameters):
        """Sets each auxiliary weight so that its term's gradient norm on
        ``parameters`` is its share of the reconstruction's.

        Arguments
        ---------
        terms : dict
            The terms returned by :meth:`forward` (graph kept).
        parameters : iterable of torch.Tensor
            The model's parameters.

        Returns
        -------
        dict
            The gradient share each auxiliary term had at this step, with
            the weight in use before this measurement and the warm-up ramp
            (``ramp w_k |g_k| / |g_recon|``).
        """
        parameters = [p for p in parameters if p.requires_grad]

        def norm(value):
            grads = torch.autograd.grad(
                value, parameters, retain_graph=True, allow_unused=True
            )
            squares = [g.pow(2).sum() for g in grads if g is not None]
            return torch.sqrt(sum(squares)) if squares else value.new_zeros(())

        recon_norm = norm(terms["recon"])
        shares = {}
        for index, name in enumerate(["cm", "cr"]):
            if name not in terms:
                continue
            term_norm = norm(terms[name])
            old = self.weights[index].clone()
            shares[name] = float(
                self.ramp() * old * term_norm / recon_norm.clamp(min=1e-12)
            )
            if term_norm > 0:
                target = self.shares[name] * recon_norm / term_norm
                momentum = self.rebalance_momentum if old > 0 else 0.0
                self.weights[index] = momentum * old + (1 - momentum) * target.detach()
        return shares
