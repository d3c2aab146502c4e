"""Losses of CMCR-Net: contrastive regularization and the stream contrast.

* :class:`ContrastiveRegularization` (CR): in a representation space the
  enhanced output is pulled toward the clean speech (positive) and pushed
  away from the noisy mixture (negative), in the ratio form of AECR-Net
  (Wu et al., CVPR 2021) that the authors' code follows::

      L_CR = sum_i w_i * D(G_i(clean), G_i(enh)) / (D(G_i(noisy), G_i(enh)) + eps)

  (with a denominator floor relative to ``D(G_i(clean), G_i(noisy))``, see
  ``ContrastiveRegularization``).

  Gradient flows through ``G_i(enh)`` only; the representation is frozen.
* Representations for CR: :class:`RandomConvRepresentation`, a random frozen
  convolutional encoder of the spectrogram (the offline default, as in the
  authors' Selector-Enhancer code), and :class:`SSLRepresentation`, which
  wraps a self-supervised model such as SpeechBrain's wav2vec 2.0 / HuBERT /
  WavLM wrappers (the paper's choice, for users who have the weights).
* :class:`StreamContrastiveLoss`: the contrastive learning of the
  collaboration module's split (this project's reading of the abstract).

Losses know nothing of the Brain: they take tensors and return scalars.

Authors
 * cmse-speechbrain contributors 2026
"""

import torch
import torch.nn.functional as F
from torch import nn

from cmse_speechbrain.cmcr_net import stft_pair


def _time_mask(lengths, steps, device):
    """[B, steps] float mask from relative lengths (None: all ones)."""
    if lengths is None:
        return None
    valid = torch.round(lengths.to(device) * steps).clamp(min=1)
    return (torch.arange(steps, device=device)[None, :] < valid[:, None]).float()


def masked_l1(a, b, lengths=None):
    """Mean absolute difference over valid frames (dim 1 is time).

    Arguments
    ---------
    a, b : torch.Tensor
        Features [B, T, ...] of the same shape.
    lengths : torch.Tensor, optional
        Relative lengths [B].

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> a = torch.zeros(2, 4, 3)
    >>> b = torch.ones(2, 4, 3)
    >>> b[:, 2:] = 100.0  # padding, ignored with lengths 0.5
    >>> masked_l1(a, b, torch.tensor([0.5, 0.5]))
    tensor(1.)
    """
    diff = (a - b).abs().flatten(start_dim=2).mean(dim=2)
    mask = _time_mask(lengths, diff.shape[1], diff.device)
    if mask is None:
        return diff.mean()
    return (diff * mask).sum() / mask.sum()


def compressed_spectrum(spec, compression):
    """Power-law compressed magnitude and complex spectrum.

    Arguments
    ---------
    spec : torch.Tensor
        SpeechBrain STFT output [B, T, F, 2].
    compression : float
        Exponent c: returns ``|X|^c`` and ``|X|^c e^{j angle X}``.

    Example
    -------
    >>> spec = torch.tensor([[[[3.0, 4.0]]]])
    >>> magnitude, complex_spec = compressed_spectrum(spec, 0.5)
    >>> round(float(magnitude), 3), [round(float(v), 3) for v in complex_spec.flatten()]
    (2.236, [1.342, 1.789])
    """
    magnitude = torch.sqrt(spec.pow(2).sum(-1) + 1e-10)
    compressed = magnitude.pow(compression)
    return compressed, spec * (compressed / magnitude).unsqueeze(-1)


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
                    (torch.rand(conv.weight.shape, generator=generator) * 2 - 1)
                    * bound
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

    def __init__(self, ssl_model, layer_groups=((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12))):
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


class ContrastiveRegularization(nn.Module):
    """Contrastive regularization (CR) loss.

    ``sum_i w_i * D(G_i(clean), G_i(enh)) / (D(G_i(noisy), G_i(enh)) + eps)``
    with ``D`` the mean absolute difference over valid frames. The clean and
    noisy representations are computed without gradient; the gradient
    flows through the representation of the enhanced signal (AECR-Net's
    form; the CRC-Net sketch ran everything under ``inference_mode``, which
    would stop it).

    Arguments
    ---------
    representation : torch.nn.Module
        Maps waveforms [B, samples] (and relative lengths) to a list of
        feature tensors [B, T, ...].
    layer_weights : list of float
        One weight per feature level. Defaults: 1/32, 1/16, 1/8, 1/4, 1 for
        the random conv encoder (Selector-Enhancer, AECR-Net); 32, 16, 8, 4
        for wav2vec 2.0 groups in the CRC-Net code (heavier on shallow
        layers).
    eps : float
        Added to the denominator.
    relative_floor : float
        Also added to the denominator, times ``D(G_i(clean), G_i(noisy))``
        (a constant per batch). This project's choice: without it the ratio
        explodes when the output is close to the noisy input, which is where
        a mask-based enhancer starts (the loss there is ``1 /
        relative_floor`` instead of ``D / eps``). 0 gives AECR-Net's form.

    Example
    -------
    >>> cr = ContrastiveRegularization(
    ...     RandomConvRepresentation(channels=[8, 16]), layer_weights=[0.5, 1.0]
    ... )
    >>> clean = torch.sin(torch.arange(8000) / 10.0).unsqueeze(0)
    >>> noisy = clean + 0.5 * torch.randn(1, 8000)
    >>> bool(cr(clean, clean, noisy) < cr(noisy, clean, noisy))
    True
    """

    def __init__(
        self,
        representation,
        layer_weights=(1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0),
        eps=1e-7,
        relative_floor=0.1,
    ):
        super().__init__()
        self.representation = representation
        self.layer_weights = list(layer_weights)
        self.eps = eps
        self.relative_floor = relative_floor

    def forward(self, enhanced, clean, noisy, lengths=None):
        """Returns the CR loss (scalar) for a batch of waveforms [B, samples]."""
        enhanced_feats = self.representation(enhanced, lengths)
        with torch.no_grad():
            clean_feats = self.representation(clean, lengths)
            noisy_feats = self.representation(noisy, lengths)
        if len(enhanced_feats) != len(self.layer_weights):
            raise ValueError(
                f"{len(self.layer_weights)} layer weights for "
                f"{len(enhanced_feats)} representation layers"
            )
        loss = enhanced.new_zeros(())
        for weight, enh, pos, neg in zip(
            self.layer_weights, enhanced_feats, clean_feats, noisy_feats
        ):
            floor = self.eps
            if self.relative_floor > 0:
                floor = floor + self.relative_floor * masked_l1(pos, neg, lengths)
            loss = loss + weight * masked_l1(pos, enh, lengths) / (
                masked_l1(neg, enh, lengths) + floor
            )
        return loss


class StreamContrastiveLoss(nn.Module):
    """Contrastive loss that teaches the CM which stream is speech.

    This project's reading of "separates speech-relevant from
    speech-irrelevant features via contrastive learning" (the authors' code
    has no such term). For each frame ``t`` the relevant stream ``r_t`` is
    the anchor, the clean speech's reference features ``c_t`` (see
    ``CMCRNet.reference_features``) the positive, and the irrelevant stream
    at every frame of the same utterance ``i_1 .. i_T`` the negatives:
    an InfoNCE loss on cosine similarities with temperature ``tau``, over
    the valid frames, averaged over the CM passes.

    Arguments
    ---------
    temperature : float
        Softmax temperature ``tau``.

    Example
    -------
    >>> loss = StreamContrastiveLoss(temperature=0.1)
    >>> clean = torch.randn(2, 20, 8)
    >>> good = loss([(clean, -clean)], clean)
    >>> bad = loss([(-clean, clean)], clean)
    >>> bool(good < bad)
    True
    """

    def __init__(self, temperature=0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, streams, reference, lengths=None):
        """Arguments: list of (relevant, irrelevant) [B, T, D] per pass,
        reference [B, T, D], relative lengths [B]. Returns a scalar."""
        if not streams:
            raise ValueError("StreamContrastiveLoss needs the CM's streams")
        positive_target = F.normalize(reference.detach(), dim=-1)
        mask = _time_mask(lengths, reference.shape[1], reference.device)
        total = 0.0
        for relevant, irrelevant in streams:
            anchor = F.normalize(relevant, dim=-1)
            negatives = F.normalize(irrelevant, dim=-1)
            positive = (anchor * positive_target).sum(-1, keepdim=True)
            negative = anchor @ negatives.transpose(1, 2)  # [B, T, T]
            if mask is not None:  # padded frames are no negatives
                negative = negative.masked_fill(mask[:, None, :] == 0, float("-inf"))
            logits = torch.cat([positive, negative], dim=-1) / self.temperature
            per_frame = -torch.log_softmax(logits, dim=-1)[..., 0]
            if mask is None:
                total = total + per_frame.mean()
            else:
                total = total + (per_frame * mask).sum() / mask.sum()
        return total / len(streams)


class ReconstructionLoss(nn.Module):
    """Waveform MSE plus an optional compressed-spectrum MSE.

    The authors' code uses the waveform MSE alone (``spectral_weight=0``).
    The spectral term, this project's option, compares power-law compressed
    magnitudes and compressed complex spectra (``|X|^c e^{j angle X}``), as
    many recent SE models do; it weighs quiet time-frequency regions more
    than the waveform MSE does.

    Arguments
    ---------
    waveform_weight : float
        Weight of the waveform MSE.
    spectral_weight : float
        Weight of the compressed-spectrum MSE (magnitude + complex, equal).
    sample_rate, n_fft, hop_length : int
        STFT of the spectral term.
    compression : float
        Exponent of the magnitude.

    Example
    -------
    >>> loss = ReconstructionLoss(spectral_weight=1.0)
    >>> clean = torch.randn(2, 8000) * 0.1
    >>> float(loss(clean, clean, torch.ones(2)))
    0.0
    >>> bool(loss(clean * 0.5, clean, torch.ones(2)) > 0)
    True
    """

    def __init__(
        self,
        waveform_weight=1.0,
        spectral_weight=0.0,
        sample_rate=16000,
        n_fft=512,
        hop_length=256,
        compression=0.3,
    ):
        super().__init__()
        self.waveform_weight = waveform_weight
        self.spectral_weight = spectral_weight
        self.compression = compression
        self.stft, _ = stft_pair(sample_rate, n_fft, hop_length)

    def forward(self, enhanced, clean, lengths=None):
        """Returns the weighted loss (scalar)."""
        mask = _time_mask(lengths, clean.shape[1], clean.device)
        squared = (enhanced - clean).pow(2)
        if mask is None:
            loss = self.waveform_weight * squared.mean()
        else:
            loss = self.waveform_weight * (squared * mask).sum() / mask.sum()
        if self.spectral_weight > 0:
            enh_mag, enh_cplx = compressed_spectrum(self.stft(enhanced), self.compression)
            clean_mag, clean_cplx = compressed_spectrum(self.stft(clean), self.compression)
            spectral = masked_mse(enh_mag, clean_mag, lengths) + masked_mse(
                enh_cplx, clean_cplx, lengths
            )
            loss = loss + self.spectral_weight * spectral
        return loss


def masked_mse(a, b, lengths=None):
    """Mean squared difference over valid frames (dim 1 is time).

    Example
    -------
    >>> masked_mse(torch.zeros(1, 4, 2), torch.ones(1, 4, 2))
    tensor(1.)
    """
    diff = (a - b).pow(2).flatten(start_dim=2).mean(dim=2)
    mask = _time_mask(lengths, diff.shape[1], diff.device)
    if mask is None:
        return diff.mean()
    return (diff * mask).sum() / mask.sum()
