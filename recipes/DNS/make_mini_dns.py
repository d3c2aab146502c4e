#!/usr/bin/env python3
"""Rebuilds ``recipes/DNS/mini_dns``, the small real DNS-style subset.

The layout is the DNS-Challenge one (see ``dns_prepare.py``); the audio is
real and comes from the shared data folder (sources and licences in
``mini_dns/README.md``)::

    python recipes/DNS/make_mini_dns.py --shared /work/shared/data

Clean speech and noise are cropped (to ``--clean_seconds`` and
``--noise_seconds``) and noise is resampled to 16 kHz to keep the subset
small; everything is written as 16-bit FLAC.

Authors
 * cmse-speechbrain contributors 2026
"""

import argparse
import pathlib
import re

from cmse_speechbrain.dataio import read_audio_checked, write_audio_atomic

HERE = pathlib.Path(__file__).resolve().parent
# 14 LibriSpeech train-clean-100 speakers (one utterance each)
CLEAN = [
    "103-1240-0000",
    "1034-121119-0000",
    "1040-133433-0000",
    "1069-133699-0000",
    "1081-125237-0000",
    "1088-129236-0000",
    "1098-133695-0000",
    "1116-132847-0000",
    "118-121721-0000",
    "1183-124566-0000",
    "1235-135883-0000",
    "1246-124548-0000",
    "125-121124-0000",
    "1263-138246-0000",
]
NOISE = [
    "noise/doing_the_dishes.wav",
    "noise/exercise_bike.wav",
    "noise/running_tap.wav",
    "noise/noise1.wav",
    "noise/noise4.wav",
    "noise_ch/ch03_sm001.wav",
    "noise_ch/ch08_sm002.wav",
    "noise_ch/ch08_sm004.wav",
]
REAL = [
    "audioset_realrec_babycry_2x43exdQ5bo.wav",
    "audioset_realrec_printer_IZHuH27jLUQ.wav",
    "ms_realrec_headset_cafe_spk2_3.wav",
    "clearvoice_input.wav",
]


def _copy(source, destination, seconds=None, offset_seconds=0.0, rate=16000):
    audio = read_audio_checked(source, rate)
    start = int(offset_seconds * rate)
    stop = start + int(seconds * rate) if seconds else None
    write_audio_atomic(destination, audio[start:stop], rate, subtype="PCM_16")


def make_mini_dns(
    shared, destination=HERE / "mini_dns", clean_seconds=4.0, noise_seconds=5.0
):
    """Writes the subset from the shared data folder ``shared``."""
    shared, destination = pathlib.Path(shared), pathlib.Path(destination)
    for utt in CLEAN:  # skip the first second: leading silence
        source = shared / "librispeech_train_clean_100" / f"{utt}.flac"
        _copy(source, destination / "clean" / f"{utt}.flac", clean_seconds, 1.0)
    for name in NOISE:
        source = shared / name
        target = (
            destination
            / "noise"
            / f"{pathlib.Path(name).parent.name}_{source.stem}.flac"
        )
        _copy(source, target, noise_seconds, 1.0)
    for rir in sorted((shared / "rir").glob("*.wav")):
        _copy(
            rir, destination / "impulse_responses" / "speechbrain" / f"{rir.stem}.flac"
        )
    synthetic = destination / "test_set" / "synthetic" / "no_reverb"
    for clean in sorted((shared / "dns_synthetic" / "clean").glob("fileid_*.wav")):
        fileid = re.search(r"fileid_\d+", clean.stem).group(0)
        _copy(clean, synthetic / "clean" / f"clean_{fileid}.flac")
        _copy(
            shared / "dns_synthetic" / "noisy" / clean.name,
            synthetic / "noisy" / f"noisy_{fileid}.flac",
        )
    for name in REAL:
        source = shared / "real_noisy" / name
        _copy(
            source, destination / "test_set" / "real_recordings" / f"{source.stem}.flac"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="/work/shared/data")
    parser.add_argument("--destination", default=str(HERE / "mini_dns"))
    parser.add_argument("--clean_seconds", type=float, default=4.0)
    parser.add_argument("--noise_seconds", type=float, default=5.0)
    args = parser.parse_args()
    make_mini_dns(args.shared, args.destination, args.clean_seconds, args.noise_seconds)
    total = sum(
        p.stat().st_size
        for p in pathlib.Path(args.destination).rglob("*")
        if p.is_file()
    )
    print(f"{args.destination}: {total / 1e6:.2f} MB")
