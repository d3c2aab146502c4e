"""SpeechBrain's own enhancement networks behind CMCR-Net's interface.

The ablation study and the speed benchmarks compare CMCR-Net with the
enhancers that ship with SpeechBrain. Wrapped here, they take a waveform
and return ``(enhanced waveform, aux)`` like
:class:`cmse_speechbrain.cmcr_net.CMCRNet`, so one Brain, one data pipeline
and one benchmark loop serve them all.

Authors
 * cmse-speechbrain contributors 2026
"""

import torch
from torch import nn

from speechbrain.lobes.models.MetricGAN import EnhancementGenerator
from speechbrain.processing.features import spectral_magnitude

from cmse_speechbrain.cmcr_net import stft_pair


class MetricGANPlusGenerator(nn.Module):
    """The MetricGAN+ generator of SpeechBrain's VoiceBank recipe, as an enhancer.

    ``speechbrain.lobes.models.MetricGAN.EnhancementGenerator`` (2-layer
    BLSTM of 200 units, linear 300, learnable sigmoid mask) on the
    ``log1p`` of the square-root magnitude of a 512-point STFT (32 ms
    Hamming window, 16 ms hop), as SpeechBrain's
    ``recipes/Voicebank/enhance/MetricGAN`` computes its features. The mask
    scales the noisy STFT (magnitude; the noisy phase is kept), where that
    recipe multiplies it into the log1p feature and inverts the log. Trained here with
    a plain spectral loss (no discriminator, no metric learning): the
    in-toolkit architecture as a peer, not the MetricGAN+ training scheme.

    Arguments
    ---------
    sample_rate : int
        Sampling rate.
    n_fft : int
        FFT size (= window length).
    hop_length : int
        Hop in samples.
    hidden_size : int
        BLSTM units per direction.
    num_layers : int
        BLSTM layers.
    dropout : float
        Dropout between BLSTM layers.

    Example
    -------
    >>> peer = MetricGANPlusGenerator()
    >>> enhanced, aux = peer(torch.randn(2, 8000) * 0.1, torch.tensor([1.0, 0.5]))
    >>> enhanced.shape, aux["streams"]
    (torch.Size([2, 8000]), [])
    """

    def __init__(
        self,
        sample_rate=16000,
        n_fft=512,
        hop_length=256,
        hidden_size=200,
        num_layers=2,
        dropout=0.0,
    ):
        super().__init__()
        self.stft, self.istft = stft_pair(sample_rate, n_fft, hop_length)
        self.generator = EnhancementGenerator(
            input_size=n_fft // 2 + 1,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout,
        )

    def forward(self, wavs, lengths=None):
        """Enhances [batch, time] waveforms; returns ``(enhanced, {"streams": []})``."""
        if lengths is None:
            lengths = torch.ones(len(wavs), device=wavs.device)
        spec = self.stft(wavs)
        features = torch.log1p(spectral_magnitude(spec, power=0.5))
        mask = self.generator(features, lengths=lengths)
        enhanced = self.istft(spec * mask.unsqueeze(-1), sig_length=wavs.shape[1])
        return enhanced, {"streams": []}
