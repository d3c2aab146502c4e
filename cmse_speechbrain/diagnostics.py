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
        energy = 10 * torch.log10(
            frame_energy(clean[None], n_fft, hop_length)[0] + 1e-10
        )
        for snr in snrs:
            # [passes, T]
            gate = gate_trace(model, _mix(clean, noise, snr)).mean(dim=-1)
            frames = min(gate.shape[1], energy.numel())
            trace, target = gate[:, :frames].numpy(), energy[:frames].numpy()
            correlations.append(
                [
                    float(np.corrcoef(t, target)[0, 1]) if t.std() > 0 else 0.0
                    for t in trace
                ]
            )
            means[snr].append(trace.mean(axis=1))
            stds.append(float(trace.std(axis=1).mean()))
    return {
        "speech_correlation": np.mean(correlations, axis=0).tolist(),
        "mean_gate": {
            snr: np.mean(values, axis=0).tolist() for snr, values in means.items()
        },
        "time_std": float(np.mean(stds)),
    }


@torch.no_grad()
def bottleneck_streams(model, noisy):
    """The bottleneck features of the last pass for one utterance.

    Arguments
    ---------
    model : cmse_speechbrain.cmcr_net.CMCRNet
        A model with a CM or a self-attention control (eval mode here).
    noisy : torch.Tensor
        [samples] waveform.

    Returns
    -------
    dict
        [frames, features] arrays: ``relevant`` and ``irrelevant`` (CM) or
        ``control`` (the control's attended features).

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2)
    >>> sorted(bottleneck_streams(model, torch.rand(4000) - 0.5))
    ['irrelevant', 'relevant']
    """
    model.eval()
    _, aux = model(noisy[None].float())
    if getattr(model, "cm", None) is not None:
        relevant, irrelevant, _ = aux["streams"][-1]
        return {"relevant": relevant[0].numpy(), "irrelevant": irrelevant[0].numpy()}
    if getattr(model, "control", None) is not None:
        return {"control": model.control.features[0].numpy()}
    raise ValueError("the model has neither a CM nor a self-attention control")


def _energy_db(signal, n_fft, hop_length, floor_db=60.0):
    """Frame energy in dB, floored at ``floor_db`` below the loudest frame."""
    energy = 10 * torch.log10(frame_energy(signal[None], n_fft, hop_length)[0] + 1e-10)
    return torch.clamp(energy, min=float(energy.max()) - floor_db)


RIDGE_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def _ridge_predict(features, targets, train, test, ridge):
    """Ridge fit on ``train`` rows (standardised features, unpenalised
    intercept), predictions for ``test`` rows."""
    mean, std = features[train].mean(0), features[train].std(0) + 1e-8
    x_train, x_test = (features[train] - mean) / std, (features[test] - mean) / std
    offset = targets[train].mean()
    gram = x_train.T @ x_train + ridge * np.eye(x_train.shape[1])
    weights = np.linalg.solve(gram, x_train.T @ (targets[train] - offset))
    return x_test @ weights + offset


def _probe_r2(features, targets, folds, groups, ridges=RIDGE_GRID):
    """Cross-validated R^2 of a ridge regression (features -> target).

    Outer folds: ``folds``; the penalty of each outer fold is chosen from
    ``ridges`` by an inner 2-fold split of its training rows by ``groups``
    (utterance) parity, so no test row chooses it."""
    predictions = np.zeros_like(targets)
    inner = groups % 2
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold

        def inner_error(ridge):
            error = 0.0
            for part in (0, 1):
                fit, held = train & (inner != part), train & (inner == part)
                if fit.any() and held.any():
                    error += (
                        (
                            targets[held]
                            - _ridge_predict(features, targets, fit, held, ridge)
                        )
                        ** 2
                    ).sum()
            return error

        best = min(ridges, key=inner_error) if len(ridges) > 1 else ridges[0]
        predictions[test] = _ridge_predict(features, targets, train, test, best)
    residual = ((targets - predictions) ** 2).sum()
    return float(1.0 - residual / ((targets - targets.mean()) ** 2).sum())


def stream_probe(
    model, pairs, snrs=(0.0, 5.0, 10.0), n_fft=512, hop_length=256, ridges=RIDGE_GRID
):
    """How much each bottleneck stream tells about the speech vs the noise.

    A linear probe: per stream, a ridge regression from the stream's
    features in a frame to the clean speech's and to the noise's frame
    energy (dB, floored 60 dB below the loudest frame) in that frame,
    trained and tested on different utterances (2 folds: alternate groups
    of 4 ``pairs`` from 8 pairs on, else alternate pairs). Its R^2 says how
    much of each source's energy the stream encodes linearly. A CM that splits
    speech from noise has a relevant stream that predicts the speech better
    than the noise (and an irrelevant stream the other way round); a plain
    self-attention control has no reason to favour either.

    Arguments
    ---------
    model : cmse_speechbrain.cmcr_net.CMCRNet
        A model with a CM or a self-attention control.
    pairs : list of (torch.Tensor, torch.Tensor)
        (clean speech, noise) waveforms, each mixed at every SNR (at least
        2 pairs).
    snrs : list of float
        SNRs in dB.
    n_fft, hop_length : int
        The model's STFT framing.
    ridges : sequence of float
        Candidate ridge penalties (on standardised features; the intercept
        is not penalised). Each outer fold picks one by an inner split of its
        training utterances.

    Returns
    -------
    dict
        Per stream: ``{"speech_r2": ..., "noise_r2": ...}``.

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2)
    >>> gen = torch.Generator().manual_seed(0)
    >>> pairs = [(torch.randn(8000, generator=gen) * (torch.arange(8000) > 3000),
    ...           torch.randn(8000, generator=gen)) for _ in range(2)]
    >>> probe = stream_probe(model, pairs, snrs=(0.0,))["relevant"]
    >>> sorted(probe), all(np.isfinite(v) for v in probe.values())
    (['noise_r2', 'speech_r2'], True)
    """
    if len(pairs) < 2:
        raise ValueError("stream_probe needs at least 2 (speech, noise) pairs")
    features, speech, noise, folds, utterances = {}, [], [], [], []
    # alternate groups of 4 pairs (noises cycle in 4s)
    group = 4 if len(pairs) >= 8 else 1
    for index, (clean, noise_signal) in enumerate(pairs):
        for snr in snrs:
            noisy = _mix(clean, noise_signal, snr)
            streams = bottleneck_streams(model, noisy)
            frames = min(
                len(next(iter(streams.values()))), 1 + clean.numel() // hop_length
            )
            energies = [
                _energy_db(signal, n_fft, hop_length)
                for signal in (clean, noisy - clean)
            ]
            frames = min([frames] + [e.numel() for e in energies])
            for name, values in streams.items():
                features.setdefault(name, []).append(values[:frames])
            speech.append(energies[0][:frames].numpy())
            noise.append(energies[1][:frames].numpy())
            folds.append(np.full(frames, (index // group) % 2))
            utterances.append(np.full(frames, index))
    speech, noise = np.concatenate(speech), np.concatenate(noise)
    folds, utterances = np.concatenate(folds), np.concatenate(utterances)
    result = {}
    for name, values in features.items():
        values = np.concatenate(values).astype(np.float64)
        result[name] = {
            "speech_r2": _probe_r2(values, speech, folds, utterances, ridges),
            "noise_r2": _probe_r2(values, noise, folds, utterances, ridges),
        }
    return result


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
    for ax, signal, name in [
        (axes[0], noisy, f"noisy ({snr_db:g} dB)"),
        (axes[1], clean, "clean"),
    ]:
        spec = torch.stft(
            signal, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True
        )
        db = 20 * torch.log10(spec.abs() + 1e-6)
        ax.imshow(
            db.numpy(),
            origin="lower",
            aspect="auto",
            vmin=float(db.max()) - 80,
            extent=[0, spec.shape[1] * hop / sample_rate, 0, sample_rate / 2000],
        )
        ax.set_ylabel("kHz")
        ax.set_title(name)
    last = gate[-1, :frames]
    order = torch.argsort(last.mean(dim=0))
    image = axes[2].imshow(
        last[:, order].T.numpy(),
        origin="lower",
        aspect="auto",
        vmin=0,
        vmax=1,
        extent=[0, seconds, 0, last.shape[1]],
        cmap="viridis",
    )
    axes[2].set_ylabel("channel (sorted)")
    axes[2].set_title("gate z of the last CM pass (1: speech-relevant stream)")
    fig.colorbar(image, ax=axes[2], fraction=0.02, pad=0.01)
    times = np.arange(frames) * hop / sample_rate
    for index, trace in enumerate(gate[:, :frames].mean(dim=-1)):
        axes[3].plot(times, trace.numpy(), label=f"mean gate, pass {index + 1}")
    axes[3].set_ylabel("mean gate")
    twin = axes[3].twinx()
    twin.plot(
        times, energy[:frames].numpy(), color="grey", alpha=0.6, label="clean energy"
    )
    twin.set_ylabel("clean frame energy (dB)")
    axes[3].legend(loc="upper left", fontsize=7)
    axes[3].set_xlabel("seconds")
    fig.suptitle(title or "collaboration module gate on real audio")
    fig.tight_layout()
    with atomic_output(path) as partial:
        fig.savefig(partial, dpi=72, format="png")
    plt.close(fig)
    return path
