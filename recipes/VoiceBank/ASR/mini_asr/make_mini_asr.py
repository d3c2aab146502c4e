#!/usr/bin/env python3
"""Rebuilds the shipped mini ASR set (VoiceBank-DEMAND layout) from real audio.

Clean read sentences with known transcripts are mixed with real noise at a
seeded SNR; the clean file, the noisy file and the transcript are written
under VoiceBank's folder names::

    python recipes/VoiceBank/ASR/mini_asr/make_mini_asr.py /work/shared/data

Authors
 * cmse-speechbrain contributors 2026
"""

import pathlib
import sys

import numpy as np
import soundfile as sf

HERE = pathlib.Path(__file__).resolve().parent
SAMPLE_RATE = 16000

# (utterance id, source file, transcript). The asr_samples recordings read
# Harvard sentences; their text is the published sentence (SpeechBrain's
# annotation misspells some words, e.g. "TUE" for "two").
TRAIN = [
    ("spk1_001", "asr_samples/spk1_snt1.wav", "The child almost hurt the small dog."),
    ("spk1_002", "asr_samples/spk1_snt2.wav", "Drop the two when you add the figures."),
    ("spk1_003", "asr_samples/spk1_snt3.wav", "At that high level the air is pure."),
    ("spk1_004", "asr_samples/spk1_snt4.wav", "A thin stripe runs down the middle."),
    ("spk1_005", "asr_samples/spk1_snt5.wav", "Sunday is the best part of the week."),
    ("spk1_006", "asr_samples/spk1_snt6.wav", "The pencils have all been used."),
    ("spk2_001", "asr_samples/spk2_snt1.wav", "We are sure that one war is enough."),
    ("spk2_002", "asr_samples/spk2_snt2.wav", "What joy there is in living."),
    ("spk2_003", "asr_samples/spk2_snt3.wav", "Tear a thin sheet from the yellow pad."),
    ("spk2_004", "asr_samples/spk2_snt4.wav", "Mend the coat before you go out."),
    ("spk2_005", "asr_samples/spk2_snt5.wav", "Jump the fence and hurry up the bank."),
    ("spk2_006", "asr_samples/spk2_snt6.wav", "Canned pears lack full flavor."),
    (
        "aew_001",
        "cmu_arctic/cmu_arctic_us_aew_a0001.wav",
        "Author of the danger trail, Philip Steels, etc.",
    ),
    (
        "aew_002",
        "cmu_arctic/cmu_arctic_us_aew_a0002.wav",
        "Not at this particular case, Tom, apologized Whittemore.",
    ),
    (
        "aew_003",
        "cmu_arctic/cmu_arctic_us_aew_a0003.wav",
        "For the twentieth time that evening the two men shook hands.",
    ),
]
TEST = [
    (
        "axb_004",
        "cmu_arctic/cmu_arctic_us_axb_a0004.wav",
        "Lord, but I'm glad to see you again, Phil.",
    ),
    ("axb_005", "cmu_arctic/cmu_arctic_us_axb_a0005.wav", "Will we ever forget it."),
    (
        "axb_006",
        "cmu_arctic/cmu_arctic_us_axb_a0006.wav",
        "God bless 'em, I hope I'll go on seeing them forever.",
    ),
    (
        "hvd_001",
        "transcribed/harvard_speech.wav",
        "The birch canoe slid on the smooth planks.",
    ),
]
NOISES = {
    "train": (["noise1", "noise3", "exercise_bike"], [0.0, 5.0, 10.0, 15.0]),
    "test": (["noise5", "dude_miaowing"], [5.0, 10.0]),
}
FOLDERS = {
    "train": (
        "clean_trainset_28spk_wav",
        "noisy_trainset_28spk_wav",
        "trainset_28spk_txt",
    ),
    "test": ("clean_testset_wav", "noisy_testset_wav", "testset_txt"),
}


def mix(clean, noise, snr_db, rng):
    """Adds a random segment of ``noise`` to ``clean`` at ``snr_db``."""
    start = rng.integers(0, len(noise) - len(clean))
    segment = noise[start : start + len(clean)]
    gain = np.sqrt(np.mean(clean**2) / (np.mean(segment**2) * 10 ** (snr_db / 10)))
    noisy = clean + gain * segment
    peak = np.abs(noisy).max()
    scale = 0.95 / peak if peak > 0.95 else 1.0
    return clean * scale, noisy * scale


def main(source):
    """Writes the mini set from the recordings under ``source``."""
    source = pathlib.Path(source)
    rng = np.random.default_rng(0)
    for split, items in [("train", TRAIN), ("test", TEST)]:
        names, snrs = NOISES[split]
        noises = [
            sf.read(source / "noise" / f"{n}.wav", dtype="float32")[0] for n in names
        ]
        clean_dir, noisy_dir, text_dir = (HERE / f for f in FOLDERS[split])
        for folder in (clean_dir, noisy_dir, text_dir):
            folder.mkdir(exist_ok=True)
        for utt_id, path, text in items:
            clean, rate = sf.read(source / path, dtype="float32")
            assert rate == SAMPLE_RATE, path
            noise_index = rng.integers(len(noises))
            clean, noisy = mix(
                clean, noises[noise_index], snrs[rng.integers(len(snrs))], rng
            )
            sf.write(clean_dir / f"{utt_id}.flac", clean, rate, subtype="PCM_16")
            sf.write(noisy_dir / f"{utt_id}.flac", noisy, rate, subtype="PCM_16")
            (text_dir / f"{utt_id}.txt").write_text(text + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data")
