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

from hyperpyyaml import load_hyperpyyaml

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main

from cmse_speechbrain.brain import CMSEBrain
from cmse_speechbrain.dataio import paired_dataio_prep

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voicebank_prepare import prepare_voicebank  # noqa: E402

if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)

    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    run_on_main(
        prepare_voicebank,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["output_folder"],
            "valid_speakers": hparams["valid_speakers"],
            "sample_rate": hparams["sample_rate"],
            "skip_prep": hparams["skip_prep"],
            "download": hparams["download"],
        },
    )
    datasets = paired_dataio_prep(hparams)

    brain = CMSEBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        epoch_counter=brain.hparams.epoch_counter,
        train_set=datasets["train"],
        valid_set=datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    brain.evaluate(
        test_set=datasets["test"],
        max_key="pesq",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
