#!/usr/bin/env python3
"""Builds a VoiceBank-layout training set from real clean speech and real noise.

This is the data the shipped pretrained model was trained on (see its model
card); it reads the source recordings, which are not shipped. Clean speech:
251 LibriSpeech train-clean-100 speakers (one utterance each, cut into 5 s
segments) and VCTK speakers p225-p228, p234 and ten 48 kHz speakers; noise:
real recordings (Speech Commands background noise, SpeechBrain and
ClearerVoice-Studio samples) at VoiceBank's training SNRs 0/5/10/15 dB.
Validation speakers (``--valid_speakers=[ls103,ls1034,p287]`` in the recipe) get the
noise files kept out of training (``dude_miaowing``, ``noise5``,
``ch03_*``) at 2.5/7.5/12.5/17.5 dB, plus the real p287 VoiceBank pairs. The
test set is the 33 real VoiceBank-DEMAND test pairs (p232, p257): unseen
speakers and unseen (DEMAND) noise.

Usage: python recipes/VoiceBank/make_real_mixtures.py SOURCE_DATA_DIR OUT_DIR
"""

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mini_voicebank"))
from make_mini_voicebank import mix, read, write  # noqa: E402

TRAIN_SNRS = [0.0, 5.0, 10.0, 15.0]
VALID_SNRS = [2.5, 7.5, 12.5, 17.5]
VALID_NOISES = {"dude_miaowing", "noise5", "ch03_sm001", "ch03_sm002", "ch03_sm003"}
VALID_SPEAKERS = {"ls103", "ls1034"}
SEGMENT_SECONDS = 5.0
RATE = 16000


def main(src, out):
    src, out = pathlib.Path(src), pathlib.Path(out)
    rng = np.random.default_rng(0)
    noises = {"train": [], "valid": []}
    for path in sorted(src.glob("noise/*.wav")) + sorted(src.glob("noise_ch/*.wav")):
        audio, _ = read(path, RATE)
        noises["valid" if path.stem in VALID_NOISES else "train"].append(audio)
    clean = []  # (name, audio)
    for path in sorted(src.glob("librispeech_train_clean_100/*.flac")):
        audio, _ = read(path, RATE)
        speaker = "ls" + path.stem.split("-")[0]
        step = int(SEGMENT_SECONDS * RATE)
        for index, start in enumerate(range(0, len(audio) - step // 2, step)):
            clean.append((f"{speaker}_{index:03d}", audio[start : start + step]))
    for path in sorted(src.glob("vctk_extra/16k/*.wav")) + sorted(
        src.glob("vctk_extra/48k/*.wav")) + sorted(src.glob("vctk_p234/*.wav")):
        audio, _ = read(path, RATE)
        clean.append((path.stem, audio))
    counts = {"train": 0, "valid": 0}
    for name, audio in clean:
        split = "valid" if name.split("_")[0] in VALID_SPEAKERS else "train"
        snrs = VALID_SNRS if split == "valid" else TRAIN_SNRS
        noise = noises[split][rng.integers(len(noises[split]))]
        clean_audio, noisy = mix(audio, noise, snrs[rng.integers(len(snrs))], rng)
        write(out, "clean_trainset_28spk_wav", name, clean_audio, RATE)
        write(out, "noisy_trainset_28spk_wav", name, noisy, RATE)
        counts[split] += 1
    for kind in ["clean", "noisy"]:
        for path in sorted(src.glob(f"voicebank_demand/{kind}/*.wav")):
            write(out, f"{kind}_trainset_28spk_wav", path.stem, read(path)[0], RATE)
        for path in sorted(src.glob(f"voicebank_demand_test/{kind}/*.wav")):
            write(out, f"{kind}_testset_wav", path.stem, read(path)[0], RATE)
    print(f"{counts['train']} training and {counts['valid']} validation mixtures in {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
