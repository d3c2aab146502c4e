"""What the collaboration module does on real audio: its gate against the speech.

The contrastive attention splits the bottleneck features with a gate
``z in (0, 1)`` per frame and channel: ``z`` lets features into the
speech-relevant stream, ``1 - z`` into the speech-irrelevant one. If the CM
learned to tell speech from noise, the gate opens where the speech is and
closes where it is not, and opens less when the noise is louder. A fixed
split of the channels (a constant gate, which the earlier loss rewarded)
does neither. :func:`gate_statistics` measures both on mixtures of real
speech and real noise; :func:`plot_gate` draws the gate beside the
spectrograms.

Authors
 * cmse-speechbrain contributors 2026
"""

import numpy as np
import torch

from cmse_speechbrain.losses import frame_energy


@torch.no_grad()
def gate_trace(model, noisy):
    """The CM gate of each pass for one utterance.

    Arguments
    ---------
    model : cmse_speechbrain.cmcr_net.CMCRNet
        A model with a CM (put in eval mode here).
    noisy : torch.Tensor
        [samples] waveform.

    Returns
    -------
    torch.Tensor
        [passes, frames, d_model].

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2)
    >>> gate_trace(model, torch.rand(4000) - 0.5).shape
    torch.Size([3, 16, 16])
    """
    if getattr(model, "cm", None) is None:
        raise ValueError("the model has no collaboration module (use_cm=False)")
    model.eval()
    _, aux = model(noisy[None].float())
    return torch.stack([gate[0] for _, _, gate in aux["streams"]])


def _mix(clean, noise, snr_db):
    noise = noise.repeat(clean.numel() // noise.numel() + 1)[: clean.numel()]
    gain = torch.sqrt(clean.pow(2).mean() / (noise.pow(2).mean() * 10 ** (snr_db / 10)))
    return clean + gain * noise


def gate_statistics(model, pairs, snrs=(0.0, 10.0, 20.0), n_fft=512, hop_length=256):
    """How the CM gate follows the speech on mixtures of real recordings.

    Arguments
    ---------
    model : cmse_speechbrain.cmcr_net.CMCRNet
        A model with a CM.
    pairs : list of (torch.Tensor, torch.Tensor)
        (clean speech, noise) waveforms; each is mixed at every SNR.
    snrs : list of float
        SNRs in dB.
    n_fft, hop_length : int
        The model's STFT framing.

    Returns
    -------
    dict
        ``speech_correlation``: per pass, the correlation over frames of the
        channel-mean gate with the clean speech's frame energy (dB),
        averaged over utterances and SNRs; ``mean_gate``: per SNR, the mean
        gate per pass; ``time_std``: the standard deviation over frames of
        the channel-mean gate, averaged.

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2)
    >>> speech = torch.sin(torch.arange(8000) / 9.0) * (torch.arange(8000) > 4000)
    >>> stats = gate_statistics(model, [(speech, torch.randn(8000))], snrs=(0.0, 20.0))
    >>> len(stats["speech_correlation"]), sorted(stats["mean_gate"])
    (3, [0.0, 20.0])
    """
    correlations, means, stds = [], {snr: [] for snr in snrs}, []
    for clean, noise in pairs:
        energy = 10 * torch.log10(frame_energy(clean[None], n_fft, hop_length)[0] + 1e-10)
        for snr in snrs:
            gate = gate_trace(model, _mix(clean, noise, snr)).mean(dim=-1)  # [passes, T]
            frames = min(gate.shape[1], energy.numel())
            trace, target = gate[:, :frames].numpy(), energy[:frames].numpy()
            correlations.append([
                float(np.corrcoef(t, target)[0, 1]) if t.std() > 0 else 0.0 for t in trace
            ])
            means[snr].append(trace.mean(axis=1))
            stds.append(float(trace.std(axis=1).mean()))
    return {
        "speech_correlation": np.mean(correlations, axis=0).tolist(),
        "mean_gate": {snr: np.mean(values, axis=0).tolist() for snr, values in means.items()},
        "time_std": float(np.mean(stds)),
    }


def plot_gate(model, clean, noise, snr_db, path, sample_rate=16000, title=""):
    """Writes a PNG: noisy and clean spectrograms, the last pass's gate over
    time and channels (channels sorted by their mean), and the channel-mean
    gate of every pass against the clean speech's frame energy.

    Needs matplotlib. Returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cmse_speechbrain.dataio import atomic_output

    noisy = _mix(clean, noise, snr_db)
    gate = gate_trace(model, noisy)  # [passes, T, d]
    n_fft = getattr(model, "n_fft", 512)
    hop = getattr(model, "hop_length", 256)
    energy = 10 * torch.log10(frame_energy(clean[None], n_fft, hop)[0] + 1e-10)
    frames = min(gate.shape[1], energy.numel())
    seconds = frames * hop / sample_rate
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    for ax, signal, name in [(axes[0], noisy, f"noisy ({snr_db:g} dB)"), (axes[1], clean, "clean")]:
        spec = torch.stft(signal, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
        db = 20 * torch.log10(spec.abs() + 1e-6)
        ax.imshow(db.numpy(), origin="lower", aspect="auto", vmin=float(db.max()) - 80,
                  extent=[0, spec.shape[1] * hop / sample_rate, 0, sample_rate / 2000])
        ax.set_ylabel("kHz")
        ax.set_title(name)
    last = gate[-1, :frames]
    order = torch.argsort(last.mean(dim=0))
    image = axes[2].imshow(last[:, order].T.numpy(), origin="lower", aspect="auto", vmin=0, vmax=1,
                           extent=[0, seconds, 0, last.shape[1]], cmap="viridis")
    axes[2].set_ylabel("channel (sorted)")
    axes[2].set_title("gate z of the last CM pass (1: speech-relevant stream)")
    fig.colorbar(image, ax=axes[2], fraction=0.02, pad=0.01)
    times = np.arange(frames) * hop / sample_rate
    for index, trace in enumerate(gate[:, :frames].mean(dim=-1)):
        axes[3].plot(times, trace.numpy(), label=f"mean gate, pass {index + 1}")
    axes[3].set_ylabel("mean gate")
    twin = axes[3].twinx()
    twin.plot(times, energy[:frames].numpy(), color="grey", alpha=0.6, label="clean energy")
    twin.set_ylabel("clean frame energy (dB)")
    axes[3].legend(loc="upper left", fontsize=7)
    axes[3].set_xlabel("seconds")
    fig.suptitle(title or "collaboration module gate on real audio")
    fig.tight_layout()
    with atomic_output(path) as partial:
        fig.savefig(partial, dpi=72, format="png")
    plt.close(fig)
    return path
