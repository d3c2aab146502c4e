#!/usr/bin/env python3
"""Recipe: train and test CMCR-Net on the DNS-Challenge data.

To run (from the repository root; the default data is the shipped subset)::

    python recipes/DNS/train.py hparams/cmse_dns.yaml
    python recipes/DNS/train.py hparams/cmse_dns.yaml \
        --data_folder=/path/to/DNS/datasets

Training mixes the noisy input on the fly from clean speech, noise and room
impulse responses (``cmse_speechbrain.mixing.OnTheFlyMixer``). The run
ends with the synthetic test sets (``test_results_<subset>.csv``,
``test_summary_<subset>.json``) and DNSMOS of the real recordings, noisy
and enhanced (``dnsmos_real.csv``, ``dnsmos_real_summary.json``).

Authors
 * cmse-speechbrain contributors 2026
"""

import os
import sys

from cmse_speechbrain.recipe import run_enhancement_recipe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dns_prepare import prepare_dns  # noqa: E402


def prepare(hparams):
    """Writes the DNS manifests and augment CSVs the YAML names."""
    prepare_dns(
        data_folder=hparams["data_folder"],
        save_folder=hparams["output_folder"],
        clean_folders=hparams["clean_folders"],
        noise_folders=hparams["noise_folders"],
        rir_folders=hparams["rir_folders"],
        synthetic_folder=hparams["synthetic_test_folder"],
        test_subsets=hparams["test_subsets"],
        real_folder=hparams["real_test_folder"],
        valid_count=hparams["valid_count"],
        valid_seed=hparams["valid_seed"],
        valid_max_seconds=hparams["valid_max_seconds"],
        snr_low=hparams["snr_low"],
        snr_high=hparams["snr_high"],
        reverb_prob=hparams["reverb_prob"],
        reverb_target=hparams["reverb_target"],
        sample_rate=hparams["sample_rate"],
        min_samples=hparams["min_audio_samples"],
        skip_prep=hparams["skip_prep"],
    )


if __name__ == "__main__":
    run_enhancement_recipe(sys.argv[1:], prepare)
