"""The train-and-test sequence of the ASR recipes: a CTC recogniser behind
a CMCR-Net front end.

A recipe's ``train.py`` names its data preparation and calls
:func:`run_asr_recipe`; the rest is shared by every ASR recipe
(VoiceBank-DEMAND, speechocean762): datasets and the character encoder
(:func:`asr_dataio_prepare`), :class:`EnhancedCTCBrain`, training, every test
set, and the export of the best model as an
:meth:`~cmse_speechbrain.asr.EnhancedASR.from_folder` folder
(:func:`export_pipeline`).

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import pathlib

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.decoders import ctc_greedy_decode
from speechbrain.utils.distributed import if_main_process, run_on_main

from cmse_speechbrain.dataio import atomic_output, read_audio_checked
from cmse_speechbrain.export import inference_yaml
from cmse_speechbrain.init_record import init_yaml
from cmse_speechbrain.recipe import load_initial_weights, start_experiment


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
    ``train_logger``, ``wer_file`` (set ``test``; another test set ``name``
    writes ``wer_<name>.txt`` beside it); optional ``wav_augment`` (an
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
            self.cer_metric.append(
                batch.id, [list(h) for h in hyps], [list(w) for w in batch.words]
            )
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
            self.checkpointer.save_and_keep_only(
                meta={"WER": stats["WER"]}, min_keys=["WER"]
            )
        elif stage == sb.Stage.TEST:
            name = getattr(self, "test_name", "test")
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current, "test set": name},
                test_stats=stats,
            )
            self.test_results = getattr(self, "test_results", {})
            self.test_results[name] = {"WER": stats["WER"], "CER": stats["CER"]}
            wer_file = pathlib.Path(self.hparams.wer_file)
            if name != "test":  # one report per test set
                wer_file = wer_file.with_name(f"wer_{name}.txt")
            if sb.utils.distributed.if_main_process():
                with atomic_output(wer_file) as partial:
                    with open(partial, "w", encoding="utf-8") as fout:
                        self.wer_metric.write_stats(fout)


def asr_dataio_prepare(hparams):
    """Datasets and character encoder for :class:`EnhancedCTCBrain`.

    Reads the json manifests ``train_annotation``, ``valid_annotation`` and
    those of :func:`named_test_sets` (entries with
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
        ``{"train": ..., "valid": ..., <test set>: ...}``
        DynamicItemDatasets with ``id``, ``sig``, ``words`` and ``tokens``.
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
    manifests = {
        "train": hparams["train_annotation"],
        "valid": hparams["valid_annotation"],
    }
    manifests.update(named_test_sets(hparams))
    for split, manifest in manifests.items():
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=manifest,
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
        raise ValueError(
            f"sorting must be random, ascending or descending, got {sorting!r}"
        )

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
            f"{len(tokenizer)} output classes (blank and "
            f"characters {sorted(tokenizer.lab2ind)}) but "
            f"output_neurons is {hparams['output_neurons']}"
        )
    return datasets


ENCODER_ASR_YAML = """\
# Character CTC recogniser (speechbrain.inference.ASR.EncoderASR), trained
# behind a CMCR-Net front end by an ASR recipe (cmse_speechbrain.asr_recipe).
sample_rate: {sample_rate}
blank_index: {blank_index}

encoder: {encoder}

tokenizer: !new:speechbrain.dataio.encoder.CTCTextEncoder

decoding_function: !name:speechbrain.decoders.ctc_greedy_decode
    blank_id: !ref <blank_index>

audio_normalizer: !new:speechbrain.dataio.preprocess.AudioNormalizer
    sample_rate: !ref <sample_rate>

modules:
    encoder: !ref <encoder>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <encoder>
        tokenizer: !ref <tokenizer>
"""


def export_encoder_asr(asr_model, tokenizer, destination, blank_index=0):
    """Writes a :class:`~cmse_speechbrain.asr.CharCTCModel` as an ``EncoderASR`` folder.

    The folder holds ``hyperparams.yaml``, ``encoder.ckpt`` and
    ``tokenizer.ckpt``; load it with
    ``EncoderASR.from_hparams(source=str(destination))``.

    Arguments
    ---------
    asr_model : CharCTCModel
        The trained recogniser.
    tokenizer : speechbrain.dataio.encoder.CTCTextEncoder
        Its character encoder.
    destination : str or pathlib.Path
        The folder to write (created).
    blank_index : int
        Index of the CTC blank.

    Example
    -------
    >>> from speechbrain.dataio.encoder import CTCTextEncoder
    >>> from speechbrain.inference.ASR import EncoderASR
    >>> from cmse_speechbrain.asr import CharCTCModel
    >>> tokenizer = CTCTextEncoder()
    >>> tokenizer.insert_blank(index=0)
    >>> tokenizer.update_from_iterable(list("AB "))
    >>> model = CharCTCModel(len(tokenizer), cnn_channels=[4], rnn_neurons=8,
    ...                      dnn_neurons=8)
    >>> folder = getfixture("tmp_path") / "asr"
    >>> export_encoder_asr(model, tokenizer, folder)
    >>> asr = EncoderASR.from_hparams(source=str(folder), savedir=str(folder))
    >>> words, _ = asr.transcribe_batch(torch.rand(1, 8000), torch.tensor([1.0]))
    >>> isinstance(words[0], str)
    True
    """
    destination = pathlib.Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    text = ENCODER_ASR_YAML.format(
        sample_rate=asr_model.config["sample_rate"],
        blank_index=blank_index,
        encoder=init_yaml(asr_model),
    )
    with atomic_output(destination / "encoder.ckpt") as partial:
        torch.save(asr_model.state_dict(), partial)
    with atomic_output(destination / "tokenizer.ckpt") as partial:
        tokenizer.save(partial)
    with atomic_output(destination / "hyperparams.yaml") as partial:
        partial.write_text(text, encoding="utf-8")


def export_pipeline(frontend, asr_model, tokenizer, destination, blank_index=0):
    """Writes an :meth:`~cmse_speechbrain.asr.EnhancedASR.from_folder` folder.

    From the trained modules: ``destination/asr``
    (:func:`export_encoder_asr`), ``destination/enhancer``
    (an :class:`~cmse_speechbrain.inference.EnhanceCMCR` folder holding the
    front end's, possibly fine-tuned, CMCR-Net) and ``pipeline.json`` (the
    mix weight).
    """
    destination = pathlib.Path(destination)
    export_encoder_asr(asr_model, tokenizer, destination / "asr", blank_index)
    enhancer_folder = destination / "enhancer"
    enhancer_folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(enhancer_folder / "enhance_model.ckpt") as partial:
        torch.save(frontend.enhancer.state_dict(), partial)
    with atomic_output(enhancer_folder / "hyperparams.yaml") as partial:
        partial.write_text(inference_yaml(frontend.enhancer), encoding="utf-8")
    weight = frontend.mix_weight
    settings = {"mix_weight": None if weight is None else float(weight.detach())}
    with atomic_output(destination / "pipeline.json") as partial:
        partial.write_text(json.dumps(settings), encoding="utf-8")


def multi_condition_augmenter(
    enabled,
    noise_csv,
    sample_rate=16000,
    snr_low=0.0,
    snr_high=15.0,
    speeds=(95, 100, 105),
):
    """The augmentation of multi-condition ASR training, or None.

    SpeechBrain's ``Augmenter`` applying, to every training batch in turn,
    ``SpeedPerturb`` (``speeds`` in percent) and ``AddNoise`` with the real
    noise listed in ``noise_csv`` (an augment CSV, see
    :func:`cmse_speechbrain.mixing.write_augment_csv`; read on first use, so
    it may be written after this is built) at an SNR drawn in
    [``snr_low``, ``snr_high``] dB.

    Arguments
    ---------
    enabled : bool
        False gives None (clean training).
    noise_csv : str or pathlib.Path
        The noise list.
    sample_rate : int
        Rate of the speech and the noise.
    snr_low, snr_high : float
        SNR range in dB.
    speeds : sequence of int
        Speed factors in percent.

    Returns
    -------
    speechbrain.augment.augmenter.Augmenter or None

    Example
    -------
    >>> multi_condition_augmenter(False, "noise.csv") is None
    True
    >>> type(multi_condition_augmenter(True, "noise.csv")).__name__
    'Augmenter'
    """
    if not enabled:
        return None
    from speechbrain.augment.augmenter import Augmenter
    from speechbrain.augment.time_domain import AddNoise, SpeedPerturb

    return Augmenter(
        concat_original=False,
        augmentations=[
            SpeedPerturb(orig_freq=sample_rate, speeds=list(speeds)),
            AddNoise(
                csv_file=str(noise_csv),
                snr_low=snr_low,
                snr_high=snr_high,
                noise_sample_rate=sample_rate,
                clean_sample_rate=sample_rate,
            ),
        ],
    )


def named_test_sets(hparams):
    """``{name: manifest}`` of the test sets: with ``test_conditions``,
    ``test_<condition>`` -> ``<output_folder>/test_<condition>.json`` each;
    else ``test_annotation``, one manifest (the set ``test``) or a mapping
    of names to manifests.

    Example
    -------
    >>> named_test_sets({"test_annotation": "out/test.json"})
    {'test': 'out/test.json'}
    >>> named_test_sets({"test_conditions": ["clean", "0dB"], "output_folder": "out"})
    {'test_clean': 'out/test_clean.json', 'test_0dB': 'out/test_0dB.json'}
    """
    if hparams.get("test_conditions"):
        folder = pathlib.Path(hparams["output_folder"])
        return {
            f"test_{c}": str(folder / f"test_{c}.json")
            for c in hparams["test_conditions"]
        }
    annotation = hparams["test_annotation"]
    if isinstance(annotation, dict):
        return dict(annotation)
    return {"test": annotation}


def run_asr_recipe(argv, prepare):
    """Parses the command line, prepares the data, trains, tests, exports.

    Arguments
    ---------
    argv : list of str
        ``hparams.yaml`` followed by SpeechBrain run options and overrides.
    prepare : callable
        ``prepare(hparams)``: writes the manifests the YAML names; run on
        the main process only.

    Returns
    -------
    EnhancedCTCBrain
        The trained Brain (its best checkpoint loaded).
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)

    start_experiment(hparams, run_opts, hparams_file, overrides)
    run_on_main(prepare, args=[hparams])
    datasets = asr_dataio_prepare(hparams)

    # The enhancer's weights: a local folder, collected on the main process.
    run_on_main(hparams["pretrainer"].collect_files)
    hparams["pretrainer"].load_collected()
    if hparams.get("asr_init_from"):  # a trained recogniser to fine-tune
        load_initial_weights(
            hparams["asr_model"],
            hparams["asr_init_from"],
            hparams["save_folder"],
            name="asr_model",
        )

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
    for name in named_test_sets(hparams):
        asr_brain.test_name = name
        asr_brain.evaluate(
            test_set=datasets[name],
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
    return asr_brain
