#!/usr/bin/env python3
"""Recipe: train and test CMCR-Net on VoiceBank-DEMAND.

To run (from the repository root; the default data is the shipped subset)::

    python recipes/VoiceBank/train.py hparams/cmse.yaml
    python recipes/VoiceBank/train.py hparams/cmse.yaml --data_folder=/path/to/VoiceBank

Killed and restarted with the same command, training resumes from the last
checkpoint. The run ends with the test set: ``test_results.csv`` (per
utterance, noisy and enhanced) and ``test_summary.json`` in the output folder.

Authors
 * cmse-speechbrain contributors 2026
"""

import os
import sys

from cmse_speechbrain.recipe import run_enhancement_recipe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voicebank_prepare import prepare_voicebank  # noqa: E402


def prepare(hparams):
    """Writes the VoiceBank manifests the YAML names."""
    prepare_voicebank(
        data_folder=hparams["data_folder"],
        save_folder=hparams["output_folder"],
        valid_speakers=hparams["valid_speakers"],
        sample_rate=hparams["sample_rate"],
        skip_prep=hparams["skip_prep"],
        download=hparams["download"],
    )


if __name__ == "__main__":
    run_enhancement_recipe(sys.argv[1:], prepare)
