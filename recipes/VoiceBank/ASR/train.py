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
import pathlib
import sys

import torch
from hyperpyyaml import load_hyperpyyaml

import speechbrain as sb
from speechbrain.decoders import ctc_greedy_decode
from speechbrain.utils.distributed import if_main_process, run_on_main

from cmse_speechbrain.dataio import atomic_output, read_audio_checked

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from asr_export import export_pipeline  # noqa: E402
from voicebank_asr_prepare import prepare_voicebank_asr  # noqa: E402


def decode_characters(log_probs, wav_lens, tokenizer, blank_index=0):
    """Greedy CTC decoding to strings (``CTCTextEncoder`` of characters).

    Example
    -------
    >>> from speechbrain.dataio.encoder import CTCTextEncoder
    >>> tokenizer = CTCTextEncoder()
    >>> tokenizer.insert_blank(index=0)
    >>> tokenizer.update_from_iterable(list("HI THERE"))
    >>> ids = [0, 1, 1, 0, 2, 3, 3, 0]  # blank H H blank I space ...
    >>> one_hot = torch.nn.functional.one_hot(torch.tensor([ids]), 8).float()
    >>> decode_characters(one_hot.log(), torch.tensor([1.0]), tokenizer)
    ['HI ']
    """
    sequences = ctc_greedy_decode(log_probs, wav_lens, blank_id=blank_index)
    return ["".join(tokenizer.decode_ndim(seq)) for seq in sequences]


class EnhancedCTCBrain(sb.Brain):
    """Trains a CTC recogniser behind an
    :class:`~cmse_speechbrain.asr.EnhancementFrontEnd`.

    Modules: ``frontend`` (the enhancer), ``asr_model`` (waveform to
    log-probabilities, e.g.
    :class:`~cmse_speechbrain.asr.CharCTCModel`). Hparams: ``ctc_cost``,
    ``tokenizer`` (a ``CTCTextEncoder``), ``blank_index``,
    ``error_rate_computer`` and ``cer_computer`` (``ErrorRateStats``),
    ``train_logger``, ``wer_file``; optional ``wav_augment`` (an
    ``Augmenter``, training only). Batches carry ``sig``, ``tokens``,
    ``words`` and ``id``.
    """

    def compute_forward(self, batch, stage):
        """Front end, then recogniser: returns log-probabilities and lengths."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        if stage == sb.Stage.TRAIN and getattr(self.hparams, "wav_augment", None):
            wavs, wav_lens = self.hparams.wav_augment(wavs, wav_lens)
        wavs = self.modules.frontend(wavs, wav_lens)
        return self.modules.asr_model(wavs, wav_lens), wav_lens

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; word and character error rates outside training."""
        log_probs, wav_lens = predictions
        tokens, token_lens = batch.tokens
        if stage == sb.Stage.TRAIN and getattr(self.hparams, "wav_augment", None):
            tokens = self.hparams.wav_augment.replicate_labels(tokens)
            token_lens = self.hparams.wav_augment.replicate_labels(token_lens)
        loss = self.hparams.ctc_cost(log_probs, tokens, wav_lens, token_lens)
        if stage != sb.Stage.TRAIN:
            hyps = decode_characters(
                log_probs, wav_lens, self.hparams.tokenizer, self.hparams.blank_index
            )
            self.wer_metric.append(
                batch.id, [h.split() for h in hyps], [w.split() for w in batch.words]
            )
            self.cer_metric.append(batch.id, [list(h) for h in hyps], [list(w) for w in batch.words])
        return loss

    def on_stage_start(self, stage, epoch=None):
        """Fresh error-rate accumulators for validation and test."""
        if stage != sb.Stage.TRAIN:
            self.wer_metric = self.hparams.error_rate_computer()
            self.cer_metric = self.hparams.cer_computer()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, checkpoints by validation WER, writes the test WER report."""
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["WER"] = self.wer_metric.summarize("error_rate")
        stats["CER"] = self.cer_metric.summarize("error_rate")
        front_end = self.modules.frontend
        front_end = getattr(front_end, "module", front_end)  # DDP
        epoch_stats = {"epoch": epoch}
        if front_end.mix_weight is not None:
            epoch_stats["mix_weight"] = round(float(front_end.mix_weight.detach()), 4)
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                epoch_stats, train_stats=self.train_stats, valid_stats=stats
            )
            self.checkpointer.save_and_keep_only(meta={"WER": stats["WER"]}, min_keys=["WER"])
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            if sb.utils.distributed.if_main_process():
                with atomic_output(self.hparams.wer_file) as partial:
                    with open(partial, "w", encoding="utf-8") as fout:
                        self.wer_metric.write_stats(fout)


def dataio_prepare(hparams):
    """Datasets and character encoder for :class:`EnhancedCTCBrain`.

    Reads the json manifests ``{train,valid,test}_annotation`` (entries with
    ``wav``, ``length``, ``words``; ``{data_root}`` is ``data_folder``),
    builds (or reloads from ``save_folder``) the ``tokenizer`` over
    ``characters`` (and any other training character) with the blank at
    ``blank_index``, and checks that ``output_neurons`` can hold them.

    Arguments
    ---------
    hparams : dict
        The recipe's hyperparameters.

    Returns
    -------
    dict
        ``{"train": ..., "valid": ..., "test": ...}`` DynamicItemDatasets
        with ``id``, ``sig``, ``words`` and ``tokens``.
    """
    sample_rate = hparams["sample_rate"]
    min_samples = hparams.get("min_audio_samples", 1)
    tokenizer = hparams["tokenizer"]

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return read_audio_checked(wav, sample_rate, min_samples)

    @sb.utils.data_pipeline.takes("words")
    @sb.utils.data_pipeline.provides("char_list", "tokens")
    def text_pipeline(words):
        char_list = list(words)
        yield char_list
        yield torch.LongTensor(tokenizer.encode_sequence(char_list))

    datasets = {}
    for split in ["train", "valid", "test"]:
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=hparams[f"{split}_annotation"],
            replacements={"data_root": hparams["data_folder"]},
            dynamic_items=[audio_pipeline, text_pipeline],
            output_keys=["id", "sig", "words", "tokens"],
        )
    sorting = hparams.get("sorting", "random")
    if sorting in ("ascending", "descending"):
        datasets["train"] = datasets["train"].filtered_sorted(
            sort_key="length", reverse=sorting == "descending"
        )
        hparams["train_dataloader_opts"]["shuffle"] = False
    elif sorting == "random":
        hparams["train_dataloader_opts"]["shuffle"] = True
    else:
        raise ValueError(f"sorting must be random, ascending or descending, got {sorting!r}")

    tokenizer.load_or_create(
        path=pathlib.Path(hparams["save_folder"]) / "tokenizer.txt",
        from_iterables=[list(hparams.get("characters", ""))],
        from_didatasets=[datasets["train"]],
        output_key="char_list",
        special_labels={"blank_label": hparams["blank_index"]},
        sequence_input=True,
    )
    if len(tokenizer) > hparams["output_neurons"]:
        raise ValueError(
            f"{len(tokenizer)} output classes (blank and characters "
            f"{sorted(tokenizer.lab2ind)}) but output_neurons is {hparams['output_neurons']}"
        )
    return datasets


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
    datasets = dataio_prepare(hparams)

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
