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

from hyperpyyaml import load_hyperpyyaml

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process, run_on_main

from cmse_speechbrain.asr import EnhancedCTCBrain, asr_dataio_prep, export_pipeline

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voicebank_asr_prepare import prepare_voicebank_asr  # noqa: E402

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
        prepare_voicebank_asr,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["output_folder"],
            "valid_speakers": hparams["valid_speakers"],
            "input_type": hparams["input_type"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    datasets = asr_dataio_prep(hparams)

    # The enhancer's weights: a local folder, collected on the main process.
    run_on_main(hparams["pretrainer"].collect_files)
    hparams["pretrainer"].load_collected()

    asr_brain = EnhancedCTCBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    asr_brain.fit(
        epoch_counter=asr_brain.hparams.epoch_counter,
        train_set=datasets["train"],
        valid_set=datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    asr_brain.evaluate(
        test_set=datasets["test"],
        min_key="WER",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
    if if_main_process():  # evaluate() loaded the best checkpoint
        export_pipeline(
            hparams["frontend"],
            hparams["asr_model"],
            hparams["tokenizer"],
            hparams["export_folder"],
            blank_index=hparams["blank_index"],
        )
