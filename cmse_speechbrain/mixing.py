"""On-the-fly noisy mixtures of clean speech and real noise.

:class:`OnTheFlyMixer` turns a batch of clean speech into ``(noisy,
target)`` training pairs on the batch's own device (a GPU when training
there), vectorised over the batch: random segments of real noise recordings
from a preloaded bank (listed in a SpeechBrain augment CSV, see
:func:`write_augment_csv`), an SNR and a recording level drawn per
utterance, optionally room impulse responses, a second noise, babble made
of the other utterances of the batch, and a spectral tilt of the noise.
The target is the speech exactly as it is inside the mixture (same gain),
so ``noisy - target`` is everything the enhancer must remove.

SpeechBrain's ``AddNoise`` reads a noise file through a data loader for
every call and scales the speech inside the mixture by an SNR-dependent
factor; a bank in memory and one vectorised draw per batch are what keeps a
GPU busy, hence this module. :func:`write_fixed_mixtures` builds the fixed
validation and test sets with the same mixing (:func:`mix_at_snr`).

Authors
 * cmse-speechbrain contributors 2026
"""

import csv
import pathlib

import soundfile as sf
import torch
from torch import nn

from cmse_speechbrain.dataio import (
    atomic_output,
    audio_info,
    read_audio_checked,
    write_audio_atomic,
)


def write_augment_csv(files, csv_path, cache_folder, sample_rate=16000, min_samples=1):
    """Writes a SpeechBrain augment CSV (``ID,duration,wav,wav_format,wav_opts``).

    Files already mono at ``sample_rate`` are listed in place; others are
    read with the checked reader (resampled, mixed down) and cached as
    float WAV in ``cache_folder``. A bad file raises
    :class:`cmse_speechbrain.dataio.AudioFileError` naming it.

    Arguments
    ---------
    files : list of str or pathlib.Path
        Noise or impulse-response files.
    csv_path : str or pathlib.Path
        CSV to write (atomically).
    cache_folder : str or pathlib.Path
        Where converted copies go.
    sample_rate : int
        Rate that AddNoise / AddReverb are configured with.
    min_samples : int
        Shortest accepted file.

    Returns
    -------
    list of dict
        The rows written.

    Example
    -------
    >>> import numpy as np
    >>> tmp = getfixture("tmp_path")
    >>> sf.write(tmp / "hum.wav", 0.1 * np.ones((4800, 2)), 48000)
    >>> rows = write_augment_csv([tmp / "hum.wav"], tmp / "noise.csv", tmp / "cache")
    >>> rows[0]["ID"], rows[0]["duration"], pathlib.Path(rows[0]["wav"]).parent.name
    ('hum', '0.1', 'cache')
    """
    rows, seen = [], {}
    for path in sorted(pathlib.Path(f) for f in files):
        info = audio_info(path)
        stem = path.stem
        seen[stem] = seen.get(stem, 0) + 1
        utt_id = stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"
        if info.samplerate == sample_rate and info.channels == 1:
            target, frames = path.resolve(), info.frames
            if frames < min_samples:
                read_audio_checked(path, sample_rate, min_samples)  # raises
        else:
            audio = read_audio_checked(path, sample_rate, min_samples)
            target = pathlib.Path(cache_folder).resolve() / f"{utt_id}.wav"
            if not target.exists() or sf.info(str(target)).frames != audio.numel():
                write_audio_atomic(target, audio, sample_rate, subtype="FLOAT")
            frames = audio.numel()
        rows.append(
            {
                "ID": utt_id,
                "duration": f"{frames / sample_rate:g}",
                "wav": str(target),
                "wav_format": target.suffix.lstrip("."),
                "wav_opts": "",
            }
        )
    with atomic_output(csv_path) as partial:
        with open(partial, "w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["ID"])
            writer.writeheader()
            writer.writerows(rows)
    return rows


def read_augment_csv(csv_path, sample_rate=16000):
    """Reads the files of a SpeechBrain augment CSV (column ``wav``).

    Returns
    -------
    list of torch.Tensor
        One mono signal per row at ``sample_rate``.

    Example
    -------
    >>> import numpy as np
    >>> tmp = getfixture("tmp_path")
    >>> sf.write(tmp / "hum.wav", 0.1 * np.ones(800), 16000)
    >>> _ = write_augment_csv([tmp / "hum.wav"], tmp / "noise.csv", tmp / "cache")
    >>> [s.shape for s in read_augment_csv(tmp / "noise.csv")]
    [torch.Size([800])]
    """
    with open(csv_path, newline="", encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))
    if not rows:
        raise ValueError(f"{csv_path}: no files listed")
    return [read_audio_checked(row["wav"], sample_rate) for row in rows]


def _masked_power(signal, valid):
    return (signal.pow(2) * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)


def _uniform(low, high, count, device):
    return low + (high - low) * torch.rand(count, device=device)


def fft_convolve(signal, kernel):
    """Linear convolution of each row of ``signal`` [B, L] with the rows of
    ``kernel`` [B, K], cut to length L (through the FFT).

    Example
    -------
    >>> fft_convolve(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.0, 1.0]]))
    tensor([[0., 1., 2.]])
    """
    size = signal.shape[1] + kernel.shape[1] - 1
    n_fft = 1 << (size - 1).bit_length()
    product = torch.fft.rfft(signal, n_fft) * torch.fft.rfft(kernel, n_fft)
    return torch.fft.irfft(product, n_fft)[:, : signal.shape[1]]


def valid_mask(signal, lengths=None):
    """[B, L] float mask of the valid samples from relative lengths.

    Example
    -------
    >>> valid_mask(torch.zeros(2, 4), torch.tensor([0.5, 1.0])).tolist()
    [[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
    """
    if lengths is None:
        return torch.ones_like(signal)
    samples = (lengths.to(signal.device) * signal.shape[1]).round()
    steps = torch.arange(signal.shape[1], device=signal.device)
    return (steps[None, :] < samples[:, None]).to(signal.dtype)


def mix_at_snr(
    speech, noise, snr_db, level_db, lengths=None, target=None, max_peak=0.99
):
    """Mixes speech and noise at given SNRs and levels (the one mixing rule
    of training, validation and test sets).

    Arguments
    ---------
    speech : torch.Tensor
        [B, L] speech as it sounds in the mixture.
    noise : torch.Tensor
        [B, L] noise (any level).
    snr_db, level_db : torch.Tensor
        [B] SNR against ``speech`` and RMS level of the mixture (dBFS).
    lengths : torch.Tensor, optional
        [B] relative lengths; samples beyond are silent.
    target : torch.Tensor, optional
        [B, L] what the enhancer should output (default: ``speech``).
    max_peak : float
        The mixture's level is lowered where it would peak above this.

    Returns
    -------
    noisy, target : torch.Tensor
        [B, L] each, with the same gain.

    Example
    -------
    >>> speech = torch.sin(torch.arange(1000.0))[None]
    >>> noisy, target = mix_at_snr(speech, torch.randn(1, 1000), torch.tensor([10.0]),
    ...                            torch.tensor([-20.0]))
    >>> snr = 10 * torch.log10(target.pow(2).sum() / (noisy - target).pow(2).sum())
    >>> round(float(snr), 2)
    10.0
    >>> round(float(20 * torch.log10(noisy.pow(2).mean().sqrt())), 2)
    -20.0
    """
    valid = valid_mask(speech, lengths)
    target = speech if target is None else target
    speech, noise, target = speech * valid, noise * valid, target * valid
    noise_power = _masked_power(noise, valid).clamp(min=1e-12)
    gain = torch.sqrt(
        _masked_power(speech, valid) / (noise_power * 10 ** (snr_db / 10))
    )
    noisy = speech + gain[:, None] * noise
    rms = _masked_power(noisy, valid).sqrt().clamp(min=1e-8)
    peak = noisy.abs().max(dim=1).values.clamp(min=1e-8)
    scale = torch.minimum(10 ** (level_db / 20) / rms, max_peak / peak)
    return scale[:, None] * noisy, scale[:, None] * target


class OnTheFlyMixer(nn.Module):
    """Makes ``(noisy, target)`` training pairs from clean speech.

    For each utterance (over its own valid samples; padding stays silent):

    1. with probability ``reverb_prob`` the speech is convolved with a
       random room impulse response; the target is then the ``"early"``
       part (direct path and the first ``early_ms`` ms), the whole
       ``"reverberant"`` speech (the DNS-Challenge convention) or the
       ``"dry"`` speech;
    2. the noise is a random segment of a random recording of the bank
       (looped if short; files drawn in proportion to their length), plus,
       with their probabilities, a second noise and babble (the sum of
       ``babble_talkers`` other utterances of the batch), each at a random
       level within +-5 dB of the first, and a spectral tilt of up to
       +-``tilt_db`` dB across the band;
    3. the noise is scaled to an SNR drawn in ``[snr_low, snr_high]`` dB
       against the (reverberant) speech;
    4. mixture and target get one gain: the mixture's RMS level is drawn in
       ``[level_low, level_high]`` dBFS, lowered if it would peak above
       ``max_peak``.

    Arguments
    ---------
    noise_csv : str or pathlib.Path
        Augment CSV of the noise recordings (read once, at the first call).
    snr_low, snr_high : float
        SNR range in dB.
    level_low, level_high : float
        Range of the mixture's RMS level, dBFS.
    rir_csv : str or pathlib.Path, optional
        Augment CSV of room impulse responses.
    reverb_prob : float
        Share of reverberated utterances (needs ``rir_csv``).
    reverb_target : str
        ``"early"``, ``"reverberant"`` or ``"dry"``.
    early_ms : float
        Length of the early part of the impulse response after its peak.
    second_noise_prob, babble_prob, tilt_prob : float
        Probabilities of the noise augmentations.
    babble_talkers : int
        Utterances summed into a babble (at most the batch size - 1).
    tilt_db : float
        Largest spectral tilt of the noise (dB from band edge to band edge).
    max_peak : float
        Largest absolute sample of a mixture.
    sample_rate : int
        Rate of the speech and of the bank.

    Example
    -------
    >>> import numpy as np
    >>> tmp = getfixture("tmp_path")
    >>> sf.write(tmp / "hiss.wav", np.random.default_rng(0).normal(0, 0.1, 8000), 16000)
    >>> _ = write_augment_csv([tmp / "hiss.wav"], tmp / "noise.csv", tmp / "cache")
    >>> mixer = OnTheFlyMixer(tmp / "noise.csv", snr_low=5, snr_high=5)
    >>> clean = 0.1 * torch.sin(torch.arange(16000.0) / 5).repeat(2, 1)
    >>> noisy, target = mixer(clean, torch.ones(2))
    >>> snr = 10 * torch.log10(target.pow(2).sum(1) / (noisy - target).pow(2).sum(1))
    >>> [round(x, 1) for x in snr.tolist()]
    [5.0, 5.0]
    """

    def __init__(
        self,
        noise_csv,
        snr_low=0.0,
        snr_high=15.0,
        level_low=-30.0,
        level_high=-20.0,
        rir_csv=None,
        reverb_prob=0.0,
        reverb_target="early",
        early_ms=50.0,
        second_noise_prob=0.0,
        babble_prob=0.0,
        babble_talkers=4,
        tilt_prob=0.0,
        tilt_db=6.0,
        max_peak=0.99,
        sample_rate=16000,
    ):
        super().__init__()
        if reverb_target not in ("early", "reverberant", "dry"):
            raise ValueError(
                "reverb_target must be 'early', 'reverberant' "
                f"or 'dry', got {reverb_target!r}"
            )
        for name, value in [
            ("reverb_prob", reverb_prob),
            ("second_noise_prob", second_noise_prob),
            ("babble_prob", babble_prob),
            ("tilt_prob", tilt_prob),
        ]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if snr_low > snr_high or level_low > level_high:
            raise ValueError("snr_low/level_low must not exceed snr_high/level_high")
        if reverb_prob > 0 and rir_csv is None:
            raise ValueError("reverb_prob > 0 needs rir_csv")
        self.noise_csv = noise_csv
        self.rir_csv = rir_csv
        self.snr = (snr_low, snr_high)
        self.level = (level_low, level_high)
        self.reverb_prob = reverb_prob
        self.reverb_target = reverb_target
        self.early_samples = int(early_ms * sample_rate / 1000)
        self.second_noise_prob = second_noise_prob
        self.babble_prob = babble_prob
        self.babble_talkers = babble_talkers
        self.tilt_prob = tilt_prob
        self.tilt_db = tilt_db
        self.max_peak = max_peak
        self.sample_rate = sample_rate
        self._bank = None
        self._rirs = None

    def _load(self, device):
        if self._bank is None:
            noises = read_augment_csv(self.noise_csv, self.sample_rate)
            lengths = torch.tensor([len(n) for n in noises])
            self._bank = {
                "audio": torch.cat(noises),
                "starts": torch.cumsum(lengths, 0) - lengths,
                "lengths": lengths,
            }
            if self.rir_csv is not None and self.reverb_prob > 0:
                rirs = read_augment_csv(self.rir_csv, self.sample_rate)
                full = torch.zeros(len(rirs), max(len(r) for r in rirs))
                early = torch.zeros_like(full)
                for i, rir in enumerate(rirs):
                    rir = rir / rir.abs().max().clamp(min=1e-8)
                    full[i, : len(rir)] = rir
                    cut = int(rir.abs().argmax()) + self.early_samples
                    early[i, :cut] = rir[:cut]
                self._rirs = {"full": full, "early": early}
        if self._bank["audio"].device != device:
            self._bank = {k: v.to(device) for k, v in self._bank.items()}
            if self._rirs is not None:
                self._rirs = {k: v.to(device) for k, v in self._rirs.items()}

    def noise_segments(self, count, samples, device):
        """``count`` random noise segments of ``samples`` samples [count, samples]."""
        self._load(device)
        bank = self._bank
        weights = bank["lengths"].float()
        files = torch.multinomial(weights, count, replacement=True)
        lengths = bank["lengths"][files]
        offsets = (torch.rand(count, device=device) * lengths).long()
        steps = torch.arange(samples, device=device)
        index = (
            bank["starts"][files, None] + (offsets[:, None] + steps) % lengths[:, None]
        )
        return bank["audio"][index]

    def _tilt(self, noise, chosen):
        spectrum = torch.fft.rfft(noise, dim=1)
        position = torch.linspace(-0.5, 0.5, spectrum.shape[1], device=noise.device)
        tilt = _uniform(-self.tilt_db, self.tilt_db, len(noise), noise.device) * chosen
        gain = 10 ** (tilt[:, None] * position[None, :] / 20)
        return torch.fft.irfft(spectrum * gain, n=noise.shape[1], dim=1)

    def _augment_noise(self, noise, speech, valid):
        count, device = len(noise), noise.device
        unit = noise / _masked_power(noise, valid).sqrt().clamp(min=1e-8)[:, None]
        if self.second_noise_prob > 0:
            second = self.noise_segments(count, noise.shape[1], device)
            second = (
                second / _masked_power(second, valid).sqrt().clamp(min=1e-8)[:, None]
            )
            chosen = (torch.rand(count, device=device) < self.second_noise_prob).float()
            gain = 10 ** (_uniform(-5, 5, count, device) / 20)
            unit = unit + (chosen * gain)[:, None] * second
        if self.babble_prob > 0 and count > 1:
            talkers = min(self.babble_talkers, count - 1)
            babble = sum(
                torch.roll(speech, shifts, dims=0) for shifts in range(1, talkers + 1)
            )
            babble = babble * valid
            power = _masked_power(babble, valid).sqrt()
            chosen = (
                (torch.rand(count, device=device) < self.babble_prob) & (power > 1e-6)
            ).float()
            gain = 10 ** (_uniform(-5, 5, count, device) / 20) / power.clamp(min=1e-8)
            unit = unit + (chosen * gain)[:, None] * babble
        if self.tilt_prob > 0:
            chosen = (torch.rand(count, device=device) < self.tilt_prob).float()
            unit = self._tilt(unit, chosen)
        return unit * valid

    def _reverberate(self, speech, valid):
        count, device = len(speech), speech.device
        chosen = torch.rand(count, device=device) < self.reverb_prob
        if not bool(chosen.any()):
            return speech, speech
        index = torch.randint(len(self._rirs["full"]), (count,), device=device)
        wet = fft_convolve(speech, self._rirs["full"][index]) * valid
        if self.reverb_target == "early":
            target = fft_convolve(speech, self._rirs["early"][index]) * valid
        else:
            target = wet if self.reverb_target == "reverberant" else speech
        return (
            torch.where(chosen[:, None], wet, speech),
            torch.where(chosen[:, None], target, speech),
        )

    @torch.no_grad()
    def forward(self, clean, lengths=None):
        """Returns ``(noisy, target)``, both [batch, time], padding silent.

        Arguments
        ---------
        clean : torch.Tensor
            [batch, time] clean speech.
        lengths : torch.Tensor, optional
            [batch] relative lengths (SpeechBrain's convention).
        """
        device = clean.device
        self._load(device)
        valid = valid_mask(clean, lengths)
        speech, target = clean * valid, clean * valid
        if self._rirs is not None:
            speech, target = self._reverberate(speech, valid)
        noise = self.noise_segments(len(clean), clean.shape[1], device)
        noise = self._augment_noise(noise, clean * valid, valid)
        snr = _uniform(*self.snr, len(clean), device)
        level = _uniform(*self.level, len(clean), device)
        return mix_at_snr(speech, noise, snr, level, lengths, target, self.max_peak)


def write_fixed_mixtures(
    clean_files,
    noise_files,
    snrs,
    folder,
    sample_rate=16000,
    max_seconds=None,
    level_db=-25.0,
    seed=0,
):
    """Mixes each clean file once, at a fixed SNR, into a paired test/valid set.

    Utterance ``i`` gets noise file ``i % len(noise_files)`` (from a seeded
    random offset, looped if shorter) at ``snrs[i % len(snrs)]`` dB, mixed
    by :func:`mix_at_snr` as in training, at ``level_db`` dBFS. The
    same arguments give the same files; the global random state is left
    untouched.

    Arguments
    ---------
    clean_files : list of str or pathlib.Path or tuple
        Clean speech (any rate; resampled); an item ``(path, start_seconds)``
        takes the segment from that time (its id gets ``_<start>s``), and a
        segment shorter than one second is skipped.
    noise_files : list of str or pathlib.Path
        Noise recordings (any rate; resampled).
    snrs : list of float
        SNRs in dB, used in turn.
    folder : str or pathlib.Path
        Receives ``noisy/<id>.wav``, ``clean/<id>.wav`` (the target).
    sample_rate : int
        Rate of the written pairs.
    max_seconds : float, optional
        Keep only the first seconds of each clean file (segment).
    level_db : float
        RMS level of each mixture (lowered if it would clip).
    seed : int
        Seed of the noise offsets.

    Returns
    -------
    dict
        A manifest: id -> ``noisy_wav``, ``clean_wav``, ``length``
        (seconds), ``snr``, ``noise``.

    Example
    -------
    >>> import numpy as np
    >>> tmp = getfixture("tmp_path")
    >>> t = np.arange(16000) / 16000
    >>> sf.write(tmp / "tone.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    >>> sf.write(tmp / "hiss.wav", np.random.default_rng(0).normal(0, 0.1, 8000), 16000)
    >>> manifest = write_fixed_mixtures(
    ...     [tmp / "tone.wav"], [tmp / "hiss.wav"], [5.0], tmp / "set"
    ... )
    >>> entry = manifest["tone"]
    >>> entry["snr"], entry["length"], pathlib.Path(entry["noisy_wav"]).exists()
    (5.0, 1.0, True)
    """
    folder = pathlib.Path(folder)
    noises = [read_audio_checked(n, sample_rate) for n in noise_files]
    max_samples = int(max_seconds * sample_rate) if max_seconds else None
    generator = torch.Generator().manual_seed(seed)
    manifest = {}
    index = 0
    for item in clean_files:
        clean_file, start_seconds = item if isinstance(item, tuple) else (item, None)
        clean = read_audio_checked(clean_file, sample_rate)
        utt_id = pathlib.Path(clean_file).stem
        if start_seconds is not None:
            clean = clean[int(start_seconds * sample_rate) :]
            utt_id = f"{utt_id}_{start_seconds:g}s"
            if clean.numel() < sample_rate:
                continue
        clean = clean[:max_samples]
        i, index = index, index + 1
        noise = noises[i % len(noises)]
        noise = noise.repeat(clean.numel() // noise.numel() + 2)
        start = int(
            torch.randint(
                0, noise.numel() - clean.numel() + 1, (1,), generator=generator
            )
        )
        snr = float(snrs[i % len(snrs)])
        noisy, target = mix_at_snr(
            clean[None],
            noise[None, start : start + clean.numel()],
            torch.tensor([snr]),
            torch.tensor([level_db]),
        )
        paths = {}
        for kind, signal in [("noisy", noisy[0]), ("clean", target[0])]:
            paths[kind] = folder / kind / f"{utt_id}.wav"
            write_audio_atomic(paths[kind], signal, sample_rate, subtype="FLOAT")
        manifest[utt_id] = {
            "noisy_wav": str(paths["noisy"].resolve()),
            "clean_wav": str(paths["clean"].resolve()),
            "length": clean.numel() / sample_rate,
            "snr": snr,
            "noise": pathlib.Path(noise_files[i % len(noise_files)]).name,
        }
    return manifest
