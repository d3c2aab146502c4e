"""On-the-fly noisy mixtures from clean speech with SpeechBrain's augment.

:class:`OnTheFlyMixer` turns a batch of clean speech into ``(noisy,
target)`` training pairs with ``speechbrain.augment.time_domain.AddNoise``
(an SNR range, noise files from a CSV) and, optionally,
``AddReverb`` (room impulse responses from a CSV).

``AddNoise`` scales the clean speech inside the mixture by ``1 - f`` with
``f = 1 / (10 ** (snr / 20) + 1)``, so the mixture is not ``clean + noise``
but ``(1 - f) clean + noise``. Training against the unscaled clean speech
would teach the network a wrong gain; the mixer returns the target with the
same scaling, recovered exactly: ``AddNoise`` draws the SNRs with one
``torch.rand(batch, 1)`` before anything else random, so the mixer replays
that draw from the saved random state (a test measures the SNR of every
mixture against its target).

:func:`write_augment_csv` writes the CSV files that ``AddNoise`` and
``AddReverb`` read, caching a 16 kHz mono copy of any file at another rate
or with several channels (SpeechBrain's own ``augment.preparation`` rewrites
such files in place; the inputs here are never modified).

Authors
 * cmse-speechbrain contributors 2026
"""

import csv
import pathlib

import soundfile as sf
import torch

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


def snr_scale(snr_db):
    """Gain ``1 - f`` that AddNoise applies to the clean speech at ``snr_db``.

    Example
    -------
    >>> round(float(snr_scale(torch.tensor(0.0))), 3)
    0.5
    """
    amplitude_ratio = 10 ** (snr_db / 20)
    return 1 - 1 / (amplitude_ratio + 1)


class OnTheFlyMixer(torch.nn.Module):
    """Makes ``(noisy, target)`` pairs from clean speech with SpeechBrain's augment.

    Arguments
    ---------
    add_noise : speechbrain.augment.time_domain.AddNoise
        Draws the noise and the SNR (``snr_low``..``snr_high``). Use
        ``pad_noise=True`` so short noise files are repeated to cover the
        speech, and ``normalize=False``: clipping is handled here, on the
        mixture and the target together.
    add_reverb : speechbrain.augment.time_domain.AddReverb, optional
        Reverberates a random subset of the batch before the noise.
    reverb_prob : float
        Share of the utterances that are reverberated.
    reverb_target : str
        ``"reverberant"`` (the DNS-Challenge convention: denoise only; the
        target is the reverberant speech) or ``"dry"`` (denoise and
        dereverberate: the target is the dry speech).
    max_peak : float
        Mixtures peaking above this are scaled down, with their targets.

    Example
    -------
    >>> from speechbrain.augment.time_domain import AddNoise
    >>> mixer = OnTheFlyMixer(AddNoise(snr_low=5, snr_high=5, pad_noise=True))
    >>> clean = 0.1 * torch.sin(torch.arange(16000.0) / 5).repeat(2, 1)
    >>> noisy, target = mixer(clean, torch.ones(2))
    >>> snr = 10 * torch.log10(target.pow(2).sum(1) / (noisy - target).pow(2).sum(1))
    >>> [round(x, 1) for x in snr.tolist()]
    [5.0, 5.0]
    """

    def __init__(
        self,
        add_noise,
        add_reverb=None,
        reverb_prob=0.0,
        reverb_target="reverberant",
        max_peak=0.99,
    ):
        super().__init__()
        if getattr(add_noise, "normalize", False):
            raise ValueError(
                "OnTheFlyMixer needs AddNoise(normalize=False): it scales the "
                "mixture and its target together"
            )
        if reverb_target not in ("reverberant", "dry"):
            raise ValueError(
                f"reverb_target must be 'reverberant' or 'dry', got {reverb_target!r}"
            )
        if not 0.0 <= reverb_prob <= 1.0:
            raise ValueError(f"reverb_prob must be in [0, 1], got {reverb_prob}")
        self.add_noise = add_noise
        self.add_reverb = add_reverb
        self.reverb_prob = reverb_prob
        self.reverb_target = reverb_target
        self.max_peak = max_peak

    def _add_noise(self, speech):
        # AddNoise's first random draw is the SNR; replay it from the same
        # random state to know the gain it gave the speech.
        devices = [speech.device] if speech.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            snr = torch.rand(1, 1, device=speech.device)
        noisy = self.add_noise(speech, torch.ones(1, device=speech.device))
        snr = snr * (self.add_noise.snr_high - self.add_noise.snr_low)
        return noisy, snr_scale(snr + self.add_noise.snr_low)

    @torch.no_grad()
    def forward(self, clean, lengths):
        """Returns ``(noisy, target)``, both [batch, time], padding silent.

        Each utterance is mixed over its own length, so its SNR is the
        drawn one whatever the padding of the batch.

        Arguments
        ---------
        clean : torch.Tensor
            [batch, time] clean speech.
        lengths : torch.Tensor
            [batch] relative lengths (SpeechBrain's convention).
        """
        noisy, target = torch.zeros_like(clean), torch.zeros_like(clean)
        samples = (lengths * clean.shape[1]).round().long().tolist()
        reverberate = torch.rand(len(clean)) < self.reverb_prob
        for i, length in enumerate(samples):
            speech = clean[i : i + 1, :length]
            if self.add_reverb is not None and reverberate[i]:
                speech = self.add_reverb(speech)
            mixture, speech_gain = self._add_noise(speech)
            source = speech if self.reverb_target == "reverberant" else clean[i : i + 1, :length]
            peak = float(mixture.abs().max())
            gain = min(1.0, self.max_peak / peak) if peak > 0 else 1.0
            noisy[i, :length] = gain * mixture[0]
            target[i, :length] = gain * speech_gain[0] * source[0]
        return noisy, target


def write_fixed_mixtures(
    clean_files,
    noise_files,
    snrs,
    folder,
    sample_rate=16000,
    max_seconds=None,
    seed=0,
):
    """Mixes each clean file once, at a fixed SNR, into a paired test/valid set.

    Utterance ``i`` gets noise file ``i % len(noise_files)`` (from a random
    offset, repeated if shorter) at ``snrs[i % len(snrs)]`` dB with
    ``AddNoise`` through :class:`OnTheFlyMixer`, so a fixed set is built
    exactly as the training mixtures are. The same arguments give the same
    files; the global random state is left untouched.

    Arguments
    ---------
    clean_files : list of str or pathlib.Path
        Clean speech (any rate; resampled).
    noise_files : list of str or pathlib.Path
        Noise recordings (any rate; resampled copies cached in ``folder``).
    snrs : list of float
        SNRs in dB, used in turn.
    folder : str or pathlib.Path
        Receives ``noisy/<id>.wav``, ``clean/<id>.wav`` (the scaled target).
    sample_rate : int
        Rate of the written pairs.
    max_seconds : float, optional
        Keep only the first seconds of each clean file.
    seed : int
        Seed of the noise offsets.

    Returns
    -------
    dict
        A manifest: id -> ``noisy_wav``, ``clean_wav``, ``length``, ``snr``,
        ``noise``.

    Example
    -------
    >>> import numpy as np
    >>> tmp = getfixture("tmp_path")
    >>> t = np.arange(16000) / 16000
    >>> sf.write(tmp / "tone.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    >>> sf.write(tmp / "hiss.wav", np.random.default_rng(0).normal(0, 0.1, 8000), 16000)
    >>> manifest = write_fixed_mixtures([tmp / "tone.wav"], [tmp / "hiss.wav"], [5.0], tmp / "set")
    >>> entry = manifest["tone"]
    >>> entry["snr"], entry["length"], pathlib.Path(entry["noisy_wav"]).exists()
    (5.0, 16000, True)
    """
    from speechbrain.augment.time_domain import AddNoise

    folder = pathlib.Path(folder)
    noise_csvs = []
    for k, noise in enumerate(noise_files):
        csv_path = folder / "noise_csv" / f"noise_{k}.csv"
        write_augment_csv([noise], csv_path, folder / "noise_cache", sample_rate)
        noise_csvs.append(csv_path)
    max_samples = int(max_seconds * sample_rate) if max_seconds else None
    manifest = {}
    with torch.random.fork_rng(devices=[]):
        for i, clean_file in enumerate(clean_files):
            torch.manual_seed(seed + i)
            clean = read_audio_checked(clean_file, sample_rate)[:max_samples]
            snr = float(snrs[i % len(snrs)])
            add_noise = AddNoise(
                csv_file=str(noise_csvs[i % len(noise_csvs)]),
                snr_low=snr,
                snr_high=snr,
                pad_noise=True,
                noise_sample_rate=sample_rate,
                clean_sample_rate=sample_rate,
            )
            noisy, target = OnTheFlyMixer(add_noise)(clean[None], torch.ones(1))
            utt_id = pathlib.Path(clean_file).stem
            paths = {}
            for kind, signal in [("noisy", noisy[0]), ("clean", target[0])]:
                paths[kind] = folder / kind / f"{utt_id}.wav"
                write_audio_atomic(paths[kind], signal, sample_rate, subtype="FLOAT")
            manifest[utt_id] = {
                "noisy_wav": str(paths["noisy"]),
                "clean_wav": str(paths["clean"]),
                "length": clean.numel(),
                "snr": snr,
                "noise": pathlib.Path(noise_files[i % len(noise_files)]).name,
            }
    return manifest
