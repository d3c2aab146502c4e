#!/usr/bin/env python3
"""Recipe: train and test CMCR-Net on real speech x real noise, mixed on the fly.

To run (from the repository root)::

    python recipes/RealMix/train.py hparams/cmse_realmix.yaml \
        --data_folder=../shared/data
    # with speechocean762 (OpenSLR 101) as it ships, for 2,500 more training utterances
    python recipes/RealMix/train.py hparams/cmse_realmix.yaml \
        --data_folder=../shared/data --speechocean_folder=/data/speechocean762
    # on a GPU, for a fixed wall-clock budget
    python recipes/RealMix/train.py hparams/cmse_realmix.yaml \
        --data_folder=../shared/data \
        --device=cuda:0 --batch_size=32 --train_time_budget_minutes=8

Killed and restarted with the same command, training resumes from the last
checkpoint. The run ends with every test set (``test_results_<set>.csv``,
``test_summary_<set>.json``) and DNSMOS of the real recordings.

Authors
 * cmse-speechbrain contributors 2026
"""

import os
import sys

from cmse_speechbrain.recipe import run_enhancement_recipe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from realmix_prepare import prepare_realmix  # noqa: E402


def prepare(hparams):
    """Writes the RealMix manifests, noise CSVs and fixed mixtures."""
    prepare_realmix(
        data_folder=hparams["data_folder"],
        save_folder=hparams["output_folder"],
        segment_seconds=hparams["valid_segment_seconds"],
        segments_per_file=hparams["valid_segments_per_file"],
        seed=hparams["seed"],
        sample_rate=hparams["sample_rate"],
        skip_prep=hparams["skip_prep"],
        speechocean_folder=hparams.get("speechocean_folder"),
        speechocean_valid_utterances=hparams.get("speechocean_valid_utterances", 2),
    )


if __name__ == "__main__":
    run_enhancement_recipe(sys.argv[1:], prepare)
