#!/usr/bin/env python3
"""Recipe: character CTC ASR on speechocean762 behind a CMCR-Net front end.

To run (from the repository root; the default data is the shipped subset)::

    python recipes/SpeechOcean762/ASR/train.py hparams/asr_speechocean.yaml
    # the corpus as it ships; multi-condition training with the RealMix
    # training noise; tested on the noisy ASR test set (written once by
    # recipes/SpeechOcean762/speechocean_prepare.py)
    python recipes/SpeechOcean762/ASR/train.py hparams/asr_speechocean.yaml \\
        --data_folder=$HOME/data/speechocean762 --noise_folder=../shared/data \\
        --multi_condition=True --asr_test_folder=$HOME/data/so762_asr_test \\
        --test_conditions=[clean,0dB,5dB,10dB]

Front-end variants as in the VoiceBank recipe: ``--mix_weight=0.0`` (no
enhancer), the frozen shipped CMCR-Net (default), ``--freeze_frontend=False``
(joint fine-tuning), ``--learnable_mix=True --mix_weight=0.5``. The run ends
with one WER report per test condition (``wer_test_<condition>.txt``) and
the best model as an ``EnhancedASR`` folder (``<output_folder>/pipeline``).

Authors
 * cmse-speechbrain contributors 2026
"""

import os
import sys

from cmse_speechbrain.asr_recipe import run_asr_recipe

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from speechocean_prepare import prepare_speechocean_asr  # noqa: E402


def prepare(hparams):
    """Writes the speechocean762 ASR manifests (and the noise list)."""
    prepare_speechocean_asr(
        speechocean_folder=hparams["data_folder"],
        save_folder=hparams["output_folder"],
        test_conditions=hparams["test_conditions"],
        asr_test_folder=hparams["asr_test_folder"],
        noise_folder=hparams["noise_folder"],
        valid_utterances=hparams["valid_utterances"],
        sample_rate=hparams["sample_rate"],
        skip_prep=hparams["skip_prep"],
    )


if __name__ == "__main__":
    run_asr_recipe(sys.argv[1:], prepare)
