"""A pretrained speech representation for CR: Resemblyzer's speaker encoder.

The paper computes its contrastive regularization (CR) in the space of a
frozen wav2vec 2.0, whose weights cannot be had offline. The one pretrained
speech network that a package index ships inside a wheel is the speaker
encoder of ``resemblyzer`` (Apache-2.0, file ``resemblyzer/pretrained.pt``,
about 17 MB): a 3-layer LSTM (256 units) over 40 mel bands followed by a
linear + ReLU projection to 256 dimensions, trained with the generalised
end-to-end (GE2E) speaker loss on LibriSpeech, VoxCeleb 1 and 2. It is
pretrained and contrastive, but supervised by speaker identity, not
self-supervised.

:class:`SpeakerEncoderRepresentation` rebuilds that network in torch, loads
the weights from the installed package (``pip install resemblyzer``; the
package itself is never imported, only its weight file is read) and makes
the whole path from waveform to features differentiable, so that CR's
gradient reaches the enhanced signal.

Authors
 * cmse-speechbrain contributors 2026
"""

import importlib.util
import pathlib
import pickle

import torch
import torchaudio
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms hop
N_MELS = 40
HIDDEN_SIZE = 256
NUM_LAYERS = 3
EMBEDDING_SIZE = 256
WINDOW_FRAMES = 160  # the encoder was trained on 1.6 s partial utterances
# Resemblyzer raises every utterance to -30 dBFS (RMS 0.0316) before the
# encoder; inputs here are expected at unit RMS and scaled down to that level.
REFERENCE_RMS = 10.0 ** (-30.0 / 20.0)


def default_weights_path():
    """Path of ``pretrained.pt`` inside the installed ``resemblyzer`` package.

    The package is located without being imported (its import pulls in
    webrtcvad and librosa, which are not needed here).

    Returns
    -------
    pathlib.Path
        The weight file.

    Raises
    ------
    FileNotFoundError
        If resemblyzer, or its weight file, is not installed.

    Example
    -------
    >>> try:
    ...     path = default_weights_path()
    ... except FileNotFoundError as err:
    ...     path = None
    ...     assert "pip install resemblyzer" in str(err)
    >>> path is None or path.name == "pretrained.pt"
    True
    """
    spec = importlib.util.find_spec("resemblyzer")  # top level: not executed
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = pathlib.Path(folder) / "pretrained.pt"
        if path.is_file():
            return path
    raise FileNotFoundError(
        "the speaker encoder's weights (resemblyzer/pretrained.pt) are not "
        "installed: pip install resemblyzer (or pip install "
        "'cmse-speechbrain[speaker]')"
    )


def load_encoder_state(path):
    """Reads the encoder's tensors from a Resemblyzer checkpoint, safely.

    The file is opened with ``torch.load(..., weights_only=True)``: a file
    that holds anything but tensors and plain containers is refused.

    Arguments
    ---------
    path : str or pathlib.Path
        A ``pretrained.pt`` ({"model_state": state_dict, ...}) or a bare
        state dict with the keys ``lstm.*`` and ``linear.*``.

    Returns
    -------
    dict
        ``lstm.*`` and ``linear.*`` tensors (GE2E's similarity scale and
        bias, needed only in training, are left out).

    Example
    -------
    >>> import tempfile
    >>> state = {
    ...     "lstm.weight_ih_l0": torch.zeros(4, 2),
    ...     "similarity_bias": torch.zeros(1),
    ... }
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     torch.save({"step": 1, "model_state": state}, folder + "/w.pt")
    ...     sorted(load_encoder_state(folder + "/w.pt"))
    ['lstm.weight_ih_l0']
    """
    path = pathlib.Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load {path}: it holds objects other than tensors "
            "and plain containers, and is only read with weights_only=True"
        ) from err
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model_state"), dict):
        checkpoint = checkpoint["model_state"]
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds no state dict of the speaker encoder")
    return {
        key: value
        for key, value in checkpoint.items()
        if key.startswith(("lstm.", "linear.")) and torch.is_tensor(value)
    }


class SpeakerEncoderRepresentation(nn.Module):
    """Frozen Resemblyzer speaker encoder, one feature level per layer.

    Waveform -> mel power spectrogram (not log: the encoder's input is the
    mel power itself; 25 ms Hann window, 10 ms hop, 40 Slaney mel bands from
    0 to 8 kHz, zero-padded centred frames, as librosa computes it for
    Resemblyzer) -> 3 LSTM layers -> linear + ReLU. ``forward`` returns the
    outputs of every LSTM layer at every frame and, with ``projection``,
    the frame-wise projection (Resemblyzer's embedding before L2
    normalisation; the encoder itself reads it at the last frame only).

    Input level: waveforms [B, samples] at 16 kHz, expected at roughly unit
    RMS (``ContrastiveRegularization`` brings the three signals to a common
    level first). They are multiplied by ``input_gain`` (default: unit RMS
    to -30 dBFS, the level Resemblyzer normalises every utterance to): the
    mel power is not log-compressed, so the level matters. Resemblyzer also
    trims long silences with a VAD; that step is not differentiable and is
    left out.

    Frozen: all parameters have ``requires_grad=False``, ``train()`` keeps
    the module in eval mode, and the gradient flows to the input waveform.
    Each LSTM layer is a separate one-layer ``nn.LSTM`` without dropout, so
    on CUDA it is run in training mode, which then computes the same
    function: cuDNN implements the RNN backward only in training mode.

    Padding: the LSTMs are causal, so frames of the valid part do not depend
    on the zero padding after it; ``lengths`` is accepted for the interface
    and not needed (mask the padded frames in the loss).

    Arguments
    ---------
    weights : str, pathlib.Path or None
        ``"default"``: the ``pretrained.pt`` of the installed resemblyzer
        package (see :func:`default_weights_path`); a path: that file, read
        with ``weights_only=True``; ``None``: random initialisation (for
        tests of shapes and wiring only).
    projection : bool
        Whether the linear + ReLU projection is returned as a fourth level.
    window_frames : int or None
        None: the LSTMs run over the whole signal. An int: the frames are cut
        into windows of that many (the last one zero-padded) that are run
        independently from a zero state, as the encoder was trained (160
        frames = 1.6 s); the outputs are put back in order.
    input_gain : float
        Multiplies the input waveform before the mel spectrogram.

    Example
    -------
    >>> rep = SpeakerEncoderRepresentation(weights=None)
    >>> wavs = torch.randn(2, 16000, requires_grad=True)
    >>> feats = rep(wavs)
    >>> [tuple(f.shape) for f in feats]
    [(2, 101, 256), (2, 101, 256), (2, 101, 256), (2, 101, 256)]
    >>> sum(p.numel() for p in rep.parameters() if p.requires_grad)
    0
    >>> feats[-1].sum().backward()
    >>> bool(wavs.grad.abs().sum() > 0)
    True
    """

    def __init__(
        self,
        weights="default",
        projection=True,
        window_frames=None,
        input_gain=REFERENCE_RMS,
    ):
        super().__init__()
        self.projection = projection
        self.window_frames = window_frames
        self.input_gain = input_gain
        self.lstms = nn.ModuleList(
            nn.LSTM(N_MELS if i == 0 else HIDDEN_SIZE, HIDDEN_SIZE, batch_first=True)
            for i in range(NUM_LAYERS)
        )
        self.linear = nn.Linear(HIDDEN_SIZE, EMBEDDING_SIZE)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        mel_fb = torchaudio.functional.melscale_fbanks(
            n_freqs=N_FFT // 2 + 1,
            f_min=0.0,
            f_max=SAMPLE_RATE / 2,
            n_mels=N_MELS,
            sample_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("mel_fb", mel_fb, persistent=False)  # [F, mels]
        if weights is not None:
            if isinstance(weights, str) and weights == "default":
                weights = default_weights_path()
            self.load_resemblyzer_weights(weights)
        self.requires_grad_(False)
        self.train(False)

    def load_resemblyzer_weights(self, path):
        """Loads ``lstm.*`` / ``linear.*`` of a Resemblyzer checkpoint."""
        state = load_encoder_state(path)
        mapped = {}
        for key, value in state.items():
            if key.startswith("lstm."):
                name, layer = key[len("lstm.") :].rsplit("_l", 1)
                mapped[f"lstms.{layer}.{name}_l0"] = value
            else:
                mapped[key] = value
        expected = {
            key: value.shape
            for key, value in self.state_dict().items()
            if key.startswith(("lstms.", "linear."))
        }
        wrong = sorted(
            key
            for key in expected
            if key not in mapped or mapped[key].shape != expected[key]
        )
        extra = sorted(set(mapped) - set(expected))
        if wrong or extra:
            raise ValueError(
                f"{path} is not a Resemblyzer speaker encoder checkpoint "
                f"(missing or misshapen: {wrong[:4]}, unexpected: {extra[:4]})"
            )
        with torch.no_grad():
            for key, param in self.state_dict().items():
                if key in mapped:
                    param.copy_(mapped[key])

    def train(self, mode=True):
        """Always stays in eval mode (frozen)."""
        return super().train(False)

    def mel_power(self, wavs):
        """Mel power spectrogram [B, T, 40], T = samples // 160 + 1."""
        spec = torch.stft(
            wavs * self.input_gain,
            n_fft=N_FFT,
            hop_length=HOP_LENGTH,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.real.pow(2) + spec.imag.pow(2)  # [B, F, T]
        return torch.matmul(power.transpose(1, 2), self.mel_fb)

    def _run_lstm(self, lstm, x):
        # cuDNN's RNN backward needs training mode; one layer without dropout
        # computes the same function in both modes.
        if x.is_cuda and torch.is_grad_enabled():
            lstm.training = True
            try:
                return lstm(x)[0]
            finally:
                lstm.training = False
        return lstm(x)[0]

    def forward(self, wavs, lengths=None):
        """Returns feature tensors [B, T, 256]: one per LSTM layer (+ projection).

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms [B, samples] at 16 kHz, roughly unit RMS.
        lengths : torch.Tensor, optional
            Relative lengths; not needed (causal network).

        Returns
        -------
        list of torch.Tensor
        """
        x = self.mel_power(wavs)
        batch, steps, _ = x.shape
        if self.window_frames:
            n_windows = -(-steps // self.window_frames)
            pad = n_windows * self.window_frames - steps
            x = nn.functional.pad(x, (0, 0, 0, pad))
            x = x.reshape(batch * n_windows, self.window_frames, N_MELS)
        feats = []
        for lstm in self.lstms:
            x = self._run_lstm(lstm, x)
            feats.append(x)
        if self.projection:
            feats.append(torch.relu(self.linear(x)))
        if self.window_frames:
            feats = [f.reshape(batch, -1, f.shape[-1])[:, :steps] for f in feats]
        return feats

    @torch.no_grad()
    def embed_mels(self, mels):
        """Resemblyzer's L2-normalised embedding of mel windows [B, T, 40].

        The projection of the last LSTM layer at the last frame; Resemblyzer
        embeds windows of 160 frames (1.6 s) cut from an utterance's
        :meth:`mel_power` and averages them.

        Example
        -------
        >>> rep = SpeakerEncoderRepresentation(weights=None)
        >>> mels = rep.mel_power(torch.randn(1, 32000))[:, :160]
        >>> round(float(rep.embed_mels(mels).norm()), 4)
        1.0
        """
        x = mels
        for lstm in self.lstms:
            x = self._run_lstm(lstm, x)
        embeds = torch.relu(self.linear(x[:, -1]))
        return embeds / embeds.norm(dim=1, keepdim=True).clamp(min=1e-12)
