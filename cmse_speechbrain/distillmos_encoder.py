"""A CR space distilled from a self-supervised model: Distill-MOS's encoder.

The paper computes its contrastive regularization (CR) in the space of a
frozen self-supervised model (wav2vec 2.0); no such weights can be had
offline here. The ``distillmos`` wheel (Microsoft, MIT licence, file
``distillmos/weights/distill_mos_v7.pt``, about 15 MB) ships a compact
speech-quality model that was *distilled from* a quality predictor built on
wav2vec 2.0 XLS-R embeddings: a 6-layer convolutional front end over the
power-law compressed complex spectrum (20 ms window, 10 ms hop) and a
7-layer transformer (200 dimensions, 8 heads), followed by an attention
pooling head that outputs a MOS. It is not a self-supervised model itself:
its layers were trained to reproduce a quality score that an SSL-based model
predicts, so they are the closest thing to an SSL space that ships inside a
package index.

:class:`DistillMOSRepresentation` rebuilds the front end and the transformer
in torch, loads their weights from the installed package (``pip install
distillmos``; the package itself is never imported, only its weight file is
read with ``weights_only=True``), and leaves the MOS head out: a model
trained against this space must not be judged by that head (DNSMOS stays the
non-intrusive judge).

Authors
 * cmse-speechbrain contributors 2026
"""

import importlib.util
import pathlib

import torch
from torch import nn

from cmse_speechbrain.safe_yaml import UNSAFE_LOAD_ERRORS, describe_load_error

SAMPLE_RATE = 16000
WIN_LENGTH = 320  # 20 ms
HOP_LENGTH = 160  # 10 ms
COMPRESSION = 0.3
CNN_CHANNELS = (64, 64, 128, 256, 256, 256)
CNN_FREQ_OUT = 4  # 161 bins after the 6 convolutions
MODEL_SIZE = 200
HEADS = 8
TRANSFORMER_LAYERS = 7
WINDOW_FRAMES = 384  # positions of the transformer's encoding (7.68 s)
DEFAULT_LAYER_GROUPS = ((0,), (1, 2), (3, 4), (5, 6, 7))
_CKPT_PREFIX = "transformer_pool_attn."


def default_weights_path():
    """Path of ``distill_mos_v7.pt`` inside the installed ``distillmos``
    package, located without importing it.

    Returns
    -------
    pathlib.Path
        The weight file.

    Raises
    ------
    FileNotFoundError
        If distillmos, or its weight file, is not installed.

    Example
    -------
    >>> try:
    ...     path = default_weights_path()
    ... except FileNotFoundError:
    ...     path = pathlib.Path("distill_mos_v7.pt")
    >>> path.name
    'distill_mos_v7.pt'
    """
    spec = importlib.util.find_spec("distillmos")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "cr_space: distillmos needs the Distill-MOS weights: pip install distillmos"
        )
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / "weights" / "distill_mos_v7.pt"
        if path.is_file():
            return path
    raise FileNotFoundError(
        "the installed distillmos package has no weights/distill_mos_v7.pt: "
        "reinstall it (pip install --force-reinstall distillmos)"
    )


def _state_dict_mapping():
    """This module's parameter names -> the names in Distill-MOS's file."""
    mapping = {}
    for index in range(len(CNN_CHANNELS)):
        for kind in ("weight", "bias"):
            # Distill-MOS's Sequential interleaves each conv with a LeakyReLU
            mapping[f"convs.{index}.{kind}"] = f"cnn.cnn.{2 * index}.{kind}"
    for name, source in (
        ("input_norm", "norm_input"),
        ("projection_norm", "transformer.norm"),
    ):
        for kind in ("weight", "bias", "running_mean", "running_var"):
            mapping[f"{name}.{kind}"] = f"{_CKPT_PREFIX}{source}.{kind}"
    for kind in ("weight", "bias"):
        mapping[f"projection.{kind}"] = f"{_CKPT_PREFIX}transformer.linear_proj.{kind}"
    mapping["positions"] = f"{_CKPT_PREFIX}transformer.position_encoding.pe"
    layer = nn.TransformerEncoderLayer(
        MODEL_SIZE, HEADS, 2 * MODEL_SIZE, batch_first=True
    )
    for index in range(TRANSFORMER_LAYERS):
        for key in layer.state_dict():
            mapping[f"layers.{index}.{key}"] = (
                f"{_CKPT_PREFIX}transformer.transformer_encoder.layers.{index}.{key}"
            )
    return mapping


class DistillMOSRepresentation(nn.Module):
    """Frozen Distill-MOS encoder; feature levels are groups of its layers.

    Waveform [B, samples] at 16 kHz -> divided by its peak (Distill-MOS's
    own input normalisation; the peak is treated as a constant, so the
    gradient is a plain rescaling) -> complex STFT (320-sample Hann window,
    160 hop, reflect-padded by 80 samples each side, uncentred) compressed
    as ``X |X|^-0.7`` -> six 3x3 convolutions with LeakyReLU(0.1), stride 2
    in frequency from the second on and 2 in time at the last (one frame per
    20 ms) -> flattened to 1,024 features per frame -> two batch norms and a
    linear projection to 200 -> sinusoidal positions -> 7 transformer layers.

    Layer 0 is the projection's input (the front end's features after the
    batch norms, 1,024 per frame); layers 1-7 are the transformer layers'
    outputs (200 per frame). ``layer_groups`` sums layers into feature
    levels, as the authors' CRC-Net sums wav2vec 2.0's 12 layers in 4
    groups of 3; the default keeps the front end apart (its size differs)
    and groups the transformer as (1, 2), (3, 4), (5, 6, 7). The authors
    weight shallow groups more (32, 16, 8, 4): give CR the weights
    ``[1.0, 0.5, 0.25, 0.125]`` (``hparams/common/objective.yaml`` does).

    Choices of this project where Distill-MOS's own code differs:

    * the magnitude is ``sqrt(re^2 + im^2 + floor^2)`` with
      ``magnitude_floor`` (Distill-MOS clips at 1e-12), so the compressed
      spectrum's gradient stays finite in silent bins;
    * signals longer than 384 frames (7.68 s, the length of the position
      table; Distill-MOS cuts long inputs into overlapping 7.68 s
      segments) are run through the transformer in consecutive windows of
      384 frames; training crops (4 s) fit in one;
    * ``lengths`` keeps the padding out of the peak and masks the padded
      frames out of the attention.

    Frozen: no parameter requires a gradient, ``train()`` keeps it in eval
    mode, and the gradient flows to the input waveform.

    Cost: about 1.8 GMAC per second of audio in the front end, some 30
    times the random conv encoder's.

    Arguments
    ---------
    weights : str, pathlib.Path or None
        ``"default"``: the weight file of the installed distillmos package
        (see :func:`default_weights_path`); a path: that file; ``None``:
        random initialisation (tests of shapes and wiring only).
    layer_groups : sequence of sequence of int
        Layers (0-7) summed into each feature level; the layers of a group
        must have one size (layer 0 cannot share a group).
    magnitude_floor : float
        Added (squared) under the square root of the magnitude.

    Example
    -------
    >>> rep = DistillMOSRepresentation(weights=None)
    >>> wavs = torch.randn(2, 16000, requires_grad=True)
    >>> feats = rep(wavs)
    >>> [tuple(f.shape) for f in feats]
    [(2, 50, 1024), (2, 50, 200), (2, 50, 200), (2, 50, 200)]
    >>> sum(p.numel() for p in rep.parameters() if p.requires_grad)
    0
    >>> feats[-1].sum().backward()
    >>> bool(wavs.grad.abs().sum() > 0)
    True
    """

    def __init__(
        self,
        weights="default",
        layer_groups=DEFAULT_LAYER_GROUPS,
        magnitude_floor=1e-6,
    ):
        super().__init__()
        self.layer_groups = [tuple(int(i) for i in group) for group in layer_groups]
        for group in self.layer_groups:
            if not group or min(group) < 0 or max(group) > TRANSFORMER_LAYERS:
                raise ValueError(
                    f"layer group {list(group)}: layers are 0 (front end) to "
                    f"{TRANSFORMER_LAYERS} (last transformer layer)"
                )
            if 0 in group and len(group) > 1:
                raise ValueError(
                    f"layer group {list(group)}: layer 0 (1,024 features) cannot "
                    "be summed with transformer layers (200 features)"
                )
        self.magnitude_floor = magnitude_floor
        self.convs = nn.ModuleList()
        in_channels = 2
        for index, out_channels in enumerate(CNN_CHANNELS):
            stride = (2 if index > 0 else 1, 2 if index == len(CNN_CHANNELS) - 1 else 1)
            self.convs.append(
                nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=(0, 1))
            )
            in_channels = out_channels
        features = CNN_CHANNELS[-1] * CNN_FREQ_OUT
        self.input_norm = nn.BatchNorm1d(features)
        self.projection_norm = nn.BatchNorm1d(features)
        self.projection = nn.Linear(features, MODEL_SIZE)
        self.register_buffer("positions", torch.zeros(1, WINDOW_FRAMES, MODEL_SIZE))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                MODEL_SIZE, HEADS, 2 * MODEL_SIZE, dropout=0.0, batch_first=True
            )
            for _ in range(TRANSFORMER_LAYERS)
        )
        self.register_buffer("window", torch.hann_window(WIN_LENGTH), persistent=False)
        if weights is not None:
            if isinstance(weights, str) and weights == "default":
                weights = default_weights_path()
            self.load_distillmos_weights(weights)
        self.requires_grad_(False)
        self.train(False)

    def load_distillmos_weights(self, path):
        """Loads the front end and transformer from a Distill-MOS file.

        Arguments
        ---------
        path : str or pathlib.Path
            A ``torch.save`` file holding ``{"model": state_dict}`` (or the
            state dict itself), read with ``weights_only=True``.

        Raises
        ------
        ValueError
            If the file cannot be loaded safely or lacks a tensor this
            network needs (named), or a tensor has the wrong shape.
        """
        path = pathlib.Path(path)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except UNSAFE_LOAD_ERRORS as error:
            raise ValueError(
                f"{path} cannot be loaded safely as Distill-MOS weights "
                f"({describe_load_error(error)})"
            ) from None
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
            checkpoint = checkpoint["model"]
        if not isinstance(checkpoint, dict):
            raise ValueError(f"{path} holds no state dict")
        state = {}
        own = self.state_dict()
        for name, source in _state_dict_mapping().items():
            value = checkpoint.get(source)
            if not torch.is_tensor(value):
                raise ValueError(
                    f"{path} is not a Distill-MOS weight file: no {source!r}"
                )
            if value.shape != own[name].shape:
                raise ValueError(
                    f"{path}: {source!r} has shape {tuple(value.shape)}, "
                    f"expected {tuple(own[name].shape)}"
                )
            state[name] = value
        self.load_state_dict(state, strict=False)

    def train(self, mode=True):
        """Always stays in eval mode (frozen)."""
        return super().train(False)

    def _compressed_spectrum(self, wavs):
        pad = (WIN_LENGTH - HOP_LENGTH) // 2
        x = nn.functional.pad(wavs.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            x,
            n_fft=WIN_LENGTH,
            hop_length=HOP_LENGTH,
            window=self.window,
            center=False,
            return_complex=True,
        )
        spec = torch.view_as_real(spec)  # [B, F, T, 2]
        magnitude = torch.sqrt(
            spec.pow(2).sum(-1, keepdim=True) + self.magnitude_floor**2
        )
        return (spec * magnitude.pow(COMPRESSION - 1.0)).permute(0, 3, 1, 2)

    def _frame_mask(self, lengths, batch, frames, device):
        """[B, T] True at padded frames (None: no padding)."""
        if lengths is None:
            return None
        valid = torch.round(lengths.to(device) * frames).clamp(min=1)
        return torch.arange(frames, device=device)[None, :] >= valid[:, None]

    def _transformer(self, x, padded):
        """Runs the layers over windows of at most 384 frames; returns every
        layer's output [B, T, 200]."""
        batch, frames, size = x.shape
        windows = -(-frames // WINDOW_FRAMES)
        total = windows * WINDOW_FRAMES
        x = nn.functional.pad(x, (0, 0, 0, total - frames))
        mask = torch.ones(batch, total, dtype=torch.bool, device=x.device)
        mask[:, :frames] = padded if padded is not None else False
        x = x.reshape(batch * windows, WINDOW_FRAMES, size) + self.positions
        mask = mask.reshape(batch * windows, WINDOW_FRAMES)
        mask[mask.all(dim=1)] = False  # a window of padding only: its output is unused
        outputs = []
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=mask)
            outputs.append(x.reshape(batch, total, size)[:, :frames])
        return outputs

    def forward(self, wavs, lengths=None):
        """Returns one feature tensor [B, T, D] per layer group."""
        magnitude = wavs.detach().abs()
        if lengths is not None:  # the peak of the valid samples
            valid = torch.round(lengths.to(wavs.device) * wavs.shape[-1])
            magnitude = magnitude * (
                torch.arange(wavs.shape[-1], device=wavs.device) < valid[:, None]
            )
        peak = magnitude.amax(dim=-1, keepdim=True)
        x = self._compressed_spectrum(wavs / (peak + 1e-8))
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), 0.1)
        x = x.flatten(1, 2)  # [B, 1024, T]
        front = self.projection_norm(self.input_norm(x)).transpose(1, 2)
        padded = self._frame_mask(lengths, front.shape[0], front.shape[1], front.device)
        layers = [front] + self._transformer(self.projection(front), padded)
        return [sum(layers[i] for i in group) for group in self.layer_groups]
