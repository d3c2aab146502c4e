#!/usr/bin/env python3
"""Recipe: character CTC ASR behind a CMCR-Net front end (VoiceBank-DEMAND).

To run (from the repository root; the default data is the shipped subset)::

    python recipes/VoiceBank/ASR/train.py hparams/asr_cmse.yaml
    python recipes/VoiceBank/ASR/train.py hparams/asr_cmse.yaml --freeze_frontend=False
    python recipes/VoiceBank/ASR/train.py hparams/asr_cmse.yaml \\
        --data_folder=/path/to/VoiceBank --valid_speakers=[p226,p287]

The front end starts from the shipped CMCR-Net (``--enhancer_source`` for
another model folder), frozen or fine-tuned jointly with the recogniser. The
run ends with the test WER (``wer_test.txt``) and writes the best model as
an ``EnhancedASR`` folder (``<output_folder>/pipeline``).

Authors
 * cmse-speechbrain contributors 2026
"""

import os
import sys

from cmse_speechbrain.asr_recipe import run_asr_recipe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voicebank_asr_prepare import prepare_voicebank_asr  # noqa: E402


def prepare(hparams):
    """Writes the VoiceBank-DEMAND ASR manifests (train, valid, test)."""
    prepare_voicebank_asr(
        data_folder=hparams["data_folder"],
        save_folder=hparams["output_folder"],
        valid_speakers=hparams["valid_speakers"],
        input_type=hparams["input_type"],
        skip_prep=hparams["skip_prep"],
    )


if __name__ == "__main__":
    run_asr_recipe(sys.argv[1:], prepare)
