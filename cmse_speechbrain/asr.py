"""CMCR-Net as the front end of SpeechBrain speech recognition.

* :class:`EnhancementFrontEnd`: a module an ASR recipe's YAML declares in
  front of its features: waveform in, enhanced waveform out, resampling to
  and from the enhancer's rate, frozen or trained jointly with the
  recogniser, optionally mixing the enhanced and the noisy signal.
* :class:`CharCTCModel` and :class:`EnhancedCTCBrain`: a small character
  CTC recogniser (SpeechBrain's Fbank and CRDNN) and the ``Brain`` of the
  recipe ``recipes/VoiceBank/ASR/train.py``; :func:`export_encoder_asr`
  writes a trained one as an ``EncoderASR`` folder.
* :class:`EnhancedASR`: one object chaining a ``from_hparams`` enhancer
  (``enhance_batch``) before any SpeechBrain ASR interface
  (``transcribe_batch``), with ``transcribe_file(path)``.
* :class:`PocketSphinxASR`: pocketsphinx behind the same
  ``transcribe_batch`` contract (its wheel ships an English model).

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import logging
import math
import pathlib
import re

import torch
import torchaudio.functional as AF

import speechbrain as sb
from speechbrain.decoders import ctc_greedy_decode
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.CRDNN import CRDNN
from speechbrain.nnet.linear import Linear
from speechbrain.processing.features import InputNormalization

from cmse_speechbrain.dataio import atomic_output, read_audio_checked
from cmse_speechbrain.inference import shipped_model_folder
from cmse_speechbrain.init_record import init_yaml, record_init

logger = logging.getLogger(__name__)


def normalize_text(text):
    """Upper case, punctuation removed, one space between words.

    Apostrophes inside a word are kept (``I'M``); other punctuation,
    including hyphens and quotes around words, becomes a word boundary.
    The same function serves references and hypotheses.

    Example
    -------
    >>> normalize_text("God bless 'em, I hope I'll go on -- seeing them!")
    "GOD BLESS EM I HOPE I'LL GO ON SEEING THEM"
    """
    text = re.sub(r"[^A-Z0-9']+", " ", text.upper())
    words = (word.strip("'") for word in text.split())
    return " ".join(word for word in words if word)


def shipped_enhancer_path():
    """The shipped CMCR-Net folder as a string (for YAML ``!apply``).

    Example
    -------
    >>> pathlib.Path(shipped_enhancer_path(), "enhance_model.ckpt").is_file()
    True
    """
    return str(shipped_model_folder())


def enhancer_checkpoint(source, filename="enhance_model.ckpt"):
    """The weights file of an enhancer folder, checked (for a ``Pretrainer``).

    The file is read once here with ``torch.load(weights_only=True)``, so a
    file holding pickled code is refused whatever ``torch.load``'s default
    (the ``Pretrainer`` reads it again with that default).

    Example
    -------
    >>> enhancer_checkpoint(shipped_enhancer_path()).endswith("enhance_model.ckpt")
    True
    """
    from cmse_speechbrain.checkpoints import UNSAFE_LOAD_ERRORS, describe_load_error

    path = pathlib.Path(source) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such enhancer checkpoint")
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except UNSAFE_LOAD_ERRORS as error:
        raise ValueError(f"{path}: cannot be loaded safely ({describe_load_error(error)})") from None
    return str(path)


def enhancer_from_folder(source, model_key="enhance_model", trust_code=False):
    """Builds (without weights) the network described by a model folder.

    The architecture comes from ``<source>/hyperparams.yaml``, loaded
    without running code from it (:mod:`cmse_speechbrain.safe_yaml`); the
    weights are loaded separately, e.g. by a ``Pretrainer`` with the path
    ``<source>/enhance_model.ckpt`` (``torch.load`` refuses pickled code).

    Arguments
    ---------
    source : str or pathlib.Path
        A local ``from_hparams`` folder (e.g. the shipped model's).
    model_key : str
        The YAML key of the network.
    trust_code : bool
        Load any SpeechBrain YAML (it may run any code), with a warning.

    Returns
    -------
    torch.nn.Module

    Example
    -------
    >>> model = enhancer_from_folder(shipped_enhancer_path())
    >>> model.config["sample_rate"]
    16000
    """
    from cmse_speechbrain.safe_yaml import load_hyperparams

    yaml_path = pathlib.Path(source) / "hyperparams.yaml"
    if not yaml_path.is_file():
        raise FileNotFoundError(f"{yaml_path}: no such enhancer hyperparameter file")
    # the pretrainer and modules are built too, but nothing is loaded
    hparams = load_hyperparams(yaml_path, trust_code=trust_code)
    if model_key not in hparams:
        raise KeyError(f"{yaml_path}: no {model_key!r} key")
    return hparams[model_key]


def _fit_length(wavs, length):
    """Crops or zero-pads the last dimension to ``length`` samples."""
    if wavs.shape[-1] >= length:
        return wavs[..., :length]
    return torch.nn.functional.pad(wavs, (0, length - wavs.shape[-1]))


class EnhancementFrontEnd(torch.nn.Module):
    """A speech enhancer as the first module of an ASR model.

    Arguments
    ---------
    enhancer : torch.nn.Module
        The enhancement network: ``enhancer(wavs, lengths)`` returns the
        enhanced waveforms, or a tuple whose first item they are (as
        :class:`~cmse_speechbrain.cmcr_net.CMCRNet` does).
    input_sample_rate : int
        Rate of the waveforms given to (and returned by) ``forward``.
    model_sample_rate : int, optional
        The enhancer's rate; by default ``enhancer.config["sample_rate"]``
        if the enhancer has one, else ``input_sample_rate``. When the rates
        differ the signal is resampled in and out (differentiably).
    freeze : bool
        True: the enhancer runs in eval mode without gradient and its
        parameters are not trained. False: joint training, gradients of the
        ASR loss flow through the enhancer.
    mix_weight : float, optional
        None: the enhanced signal alone. A value ``w`` in [0, 1]: the
        output is ``w * enhanced + (1 - w) * noisy`` (mixing some of the
        noisy input back reduces the artefacts that hurt recognisers).
    learnable_mix : bool
        If True, ``w`` is learned (a sigmoid of a parameter initialised at
        ``mix_weight``, which must then be in (0, 1)), also when the
        enhancer is frozen.

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> enhancer = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2)
    >>> front_end = EnhancementFrontEnd(enhancer, input_sample_rate=8000,
    ...                                 mix_weight=0.7, learnable_mix=True)
    >>> wavs = torch.rand(2, 4000) - 0.5
    >>> front_end(wavs, torch.tensor([1.0, 0.8])).shape
    torch.Size([2, 4000])
    >>> round(float(front_end.mix_weight.detach()), 3)
    0.7
    """

    def __init__(
        self,
        enhancer,
        input_sample_rate=16000,
        model_sample_rate=None,
        freeze=True,
        mix_weight=None,
        learnable_mix=False,
    ):
        super().__init__()
        self.enhancer = enhancer
        self.input_sample_rate = int(input_sample_rate)
        if model_sample_rate is None:
            config = getattr(enhancer, "config", {})
            model_sample_rate = config.get("sample_rate", input_sample_rate)
        self.model_sample_rate = int(model_sample_rate)
        self.freeze = freeze
        if mix_weight is not None and not 0.0 <= mix_weight <= 1.0:
            raise ValueError(f"mix_weight must be in [0, 1], got {mix_weight}")
        if learnable_mix:
            if mix_weight is None or not 0.0 < mix_weight < 1.0:
                raise ValueError(
                    f"learnable_mix needs an initial mix_weight in (0, 1), got {mix_weight}"
                )
            logit = math.log(mix_weight / (1.0 - mix_weight))
            self.mix_logit = torch.nn.Parameter(torch.tensor(float(logit)))
        else:
            self.mix_logit = None
        fixed = None if mix_weight is None or learnable_mix else torch.tensor(float(mix_weight))
        self.register_buffer("fixed_mix_weight", fixed, persistent=False)
        if freeze:
            for param in self.enhancer.parameters():
                param.requires_grad_(False)
            self.enhancer.eval()

    @property
    def mix_weight(self):
        """The current weight of the enhanced signal (None: enhanced only)."""
        if self.mix_logit is not None:
            return torch.sigmoid(self.mix_logit)
        return self.fixed_mix_weight

    def train(self, mode=True):
        """Sets train/eval mode; a frozen enhancer always stays in eval."""
        super().train(mode)
        if self.freeze:
            self.enhancer.eval()
        return self

    def enhance(self, wavs, wav_lens=None):
        """The enhancer's output at the input rate, no mixing."""
        length = wavs.shape[-1]
        resample = self.model_sample_rate != self.input_sample_rate
        model_in = (
            AF.resample(wavs, self.input_sample_rate, self.model_sample_rate)
            if resample
            else wavs
        )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            enhanced = self.enhancer(model_in, wav_lens)
        if isinstance(enhanced, (tuple, list)):
            enhanced = enhanced[0]
        if resample:
            enhanced = AF.resample(enhanced, self.model_sample_rate, self.input_sample_rate)
        return _fit_length(enhanced, length)

    def forward(self, wavs, wav_lens=None):
        """Enhances (and optionally mixes) a batch.

        Arguments
        ---------
        wavs : torch.Tensor
            [B, samples] at ``input_sample_rate``.
        wav_lens : torch.Tensor, optional
            Relative lengths [B].

        Returns
        -------
        torch.Tensor
            [B, samples] at ``input_sample_rate``.
        """
        enhanced = self.enhance(wavs, wav_lens)
        weight = self.mix_weight
        if weight is None:
            return enhanced
        return weight * enhanced + (1.0 - weight) * wavs


class CharCTCModel(torch.nn.Module):
    """A small character CTC recogniser: waveform in, log-probabilities out.

    SpeechBrain's ``Fbank``, per-utterance mean/variance normalisation,
    ``CRDNN`` and a linear output layer with log-softmax. The constructor
    arguments are kept in ``config`` so that an exported YAML can rebuild it.

    Arguments
    ---------
    output_neurons : int
        Output classes (characters and the CTC blank).
    sample_rate : int
        Rate of the input waveforms.
    n_mels : int
        Mel filterbank channels.
    cnn_blocks, cnn_channels, rnn_layers, rnn_neurons, dnn_blocks, dnn_neurons
        Sizes of the CRDNN (see ``speechbrain.lobes.models.CRDNN``).
    time_pooling_size : int
        Time downsampling of the CNN (1: none).
    dropout : float
        Dropout of the CRDNN.

    Example
    -------
    >>> model = CharCTCModel(output_neurons=30, cnn_channels=[4], rnn_neurons=8,
    ...                      dnn_neurons=8)
    >>> model(torch.rand(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 50, 30])
    """

    @record_init
    def __init__(
        self,
        output_neurons,
        sample_rate=16000,
        n_mels=40,
        cnn_blocks=1,
        cnn_channels=(16,),
        rnn_layers=1,
        rnn_neurons=64,
        dnn_blocks=1,
        dnn_neurons=64,
        time_pooling_size=2,
        dropout=0.1,
    ):
        super().__init__()
        cnn_channels = list(cnn_channels)
        self.compute_features = Fbank(sample_rate=sample_rate, n_mels=n_mels)
        self.normalize = InputNormalization(norm_type="sentence")
        self.crdnn = CRDNN(
            input_shape=[None, None, n_mels],
            activation=torch.nn.LeakyReLU,
            dropout=dropout,
            cnn_blocks=cnn_blocks,
            cnn_channels=cnn_channels,
            cnn_kernelsize=(3, 3),
            time_pooling=time_pooling_size > 1,
            time_pooling_size=max(time_pooling_size, 1),
            rnn_layers=rnn_layers,
            rnn_neurons=rnn_neurons,
            rnn_bidirectional=True,
            dnn_blocks=dnn_blocks,
            dnn_neurons=dnn_neurons,
        )
        self.output = Linear(input_size=dnn_neurons, n_neurons=output_neurons)

    def forward(self, wavs, wav_lens=None):
        """Maps waveforms [B, samples] to log-probabilities [B, frames, classes]."""
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        feats = self.normalize(self.compute_features(wavs), wav_lens)
        return torch.log_softmax(self.output(self.crdnn(feats)), dim=-1)


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
    """Trains a CTC recogniser behind an :class:`EnhancementFrontEnd`.

    Modules: ``frontend`` (the enhancer), ``asr_model`` (waveform to
    log-probabilities, e.g. :class:`CharCTCModel`). Hparams: ``ctc_cost``,
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


def asr_dataio_prep(hparams):
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


def export_pipeline(frontend, asr_model, tokenizer, destination, blank_index=0):
    """Writes an :meth:`EnhancedASR.from_folder` folder from trained modules.

    ``destination/asr`` (:func:`export_encoder_asr`), ``destination/enhancer``
    (an :class:`~cmse_speechbrain.inference.EnhanceCMCR` folder holding the
    front end's, possibly fine-tuned, CMCR-Net) and ``pipeline.json`` (the
    mix weight).
    """
    from cmse_speechbrain.export import inference_yaml

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


ENCODER_ASR_YAML = """\
# Character CTC recogniser (speechbrain.inference.ASR.EncoderASR), trained
# behind a CMCR-Net front end by recipes/VoiceBank/ASR/train.py.
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
    """Writes a :class:`CharCTCModel` as an ``EncoderASR`` model folder.

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


def _sample_rate_of(interface, default=16000):
    """The rate a SpeechBrain interface expects its waveforms at."""
    rate = getattr(interface, "sample_rate", None)
    if isinstance(rate, int):
        return rate
    hparams = getattr(interface, "hparams", None)
    if hparams is not None and isinstance(getattr(hparams, "sample_rate", None), int):
        return hparams.sample_rate
    normalizer = getattr(interface, "audio_normalizer", None)
    return getattr(normalizer, "sample_rate", default)


class EnhancedASR:
    """A speech enhancer chained before a speech recogniser.

    Arguments
    ---------
    enhancer : object
        A SpeechBrain enhancement interface with ``enhance_batch(wavs,
        lengths)`` (e.g. :class:`~cmse_speechbrain.inference.EnhanceCMCR`),
        or None to transcribe the input as it is.
    asr : object
        A SpeechBrain ASR interface with ``transcribe_batch(wavs, wav_lens)``
        returning ``(words, tokens)`` (``EncoderDecoderASR``, ``EncoderASR``,
        :class:`PocketSphinxASR`, ...).
    mix_weight : float, optional
        None: the recogniser hears the enhanced signal; ``w``: it hears
        ``w * enhanced + (1 - w) * noisy``.

    Example
    -------
    >>> from cmse_speechbrain.inference import EnhanceCMCR
    >>> class CountSamples:  # any object with SpeechBrain's transcribe_batch
    ...     sample_rate = 16000
    ...     def transcribe_batch(self, wavs, wav_lens):
    ...         return [f"{wavs.shape[-1]} SAMPLES"] * len(wavs), None
    >>> enhancer = EnhanceCMCR.from_hparams(source=shipped_enhancer_path())
    >>> pipeline = EnhancedASR(enhancer, CountSamples(), mix_weight=0.5)
    >>> recipe_data = pathlib.Path(__file__).parents[1] / "recipes/VoiceBank/ASR/mini_asr"
    >>> wav = recipe_data / "noisy_testset_wav" / "axb_005.flac"
    >>> pipeline.transcribe_file(wav)
    '25041 SAMPLES'
    """

    def __init__(self, enhancer, asr, mix_weight=None):
        if not hasattr(asr, "transcribe_batch"):
            raise TypeError(f"{type(asr).__name__} has no transcribe_batch")
        if enhancer is not None and not hasattr(enhancer, "enhance_batch"):
            raise TypeError(f"{type(enhancer).__name__} has no enhance_batch")
        if mix_weight is not None and not 0.0 <= mix_weight <= 1.0:
            raise ValueError(f"mix_weight must be in [0, 1], got {mix_weight}")
        self.enhancer = enhancer
        self.asr = asr
        self.mix_weight = mix_weight
        self.sample_rate = _sample_rate_of(asr)
        self.enhancer_rate = _sample_rate_of(enhancer) if enhancer is not None else None

    @classmethod
    def from_folders(cls, enhancer_source, asr_source, asr_class=None, savedir=None,
                     mix_weight=None, run_opts=None, trust_code=False):
        """Loads both halves from local folders, without running code from
        them (:mod:`cmse_speechbrain.safe_yaml`; ``trust_code=True``: any
        SpeechBrain YAML, with a warning).

        Arguments
        ---------
        enhancer_source : str or pathlib.Path
            An :class:`~cmse_speechbrain.inference.EnhanceCMCR` folder.
        asr_source : str or pathlib.Path
            A SpeechBrain ASR folder (local; nothing is downloaded).
        asr_class : type, optional
            Its interface class (default ``EncoderASR``).
        savedir : str or pathlib.Path, optional
            With ``trust_code``: where the ASR's files are linked (default:
            the folder itself). Safe loading reads them in place.
        mix_weight : float, optional
            See the class.
        run_opts : dict, optional
            E.g. ``{"device": "cuda:0"}``.
        trust_code : bool
            Load any SpeechBrain YAML in either folder (it may run any code).
        """
        from speechbrain.inference.ASR import EncoderASR

        from cmse_speechbrain.inference import EnhanceCMCR
        from cmse_speechbrain.safe_yaml import load_pretrained

        asr_class = asr_class or EncoderASR
        asr_source = pathlib.Path(asr_source)
        if not asr_source.is_dir():
            raise FileNotFoundError(f"{asr_source}: no such ASR model folder")
        enhancer = EnhanceCMCR.from_hparams(
            source=str(enhancer_source), run_opts=run_opts, trust_code=trust_code
        )
        asr = load_pretrained(
            asr_class, asr_source, run_opts=run_opts, trust_code=trust_code,
            savedir=str(savedir or asr_source),
        )
        return cls(enhancer, asr, mix_weight=mix_weight)

    @classmethod
    def from_folder(cls, folder, **kwargs):
        """Loads a folder written by the ASR recipe (``enhancer/``, ``asr/``
        and ``pipeline.json`` with the mix weight)."""
        folder = pathlib.Path(folder)
        settings_path = folder / "pipeline.json"
        settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
        kwargs.setdefault("mix_weight", settings.get("mix_weight"))
        return cls.from_folders(folder / "enhancer", folder / "asr", **kwargs)

    @torch.no_grad()
    def enhance_batch(self, wavs, wav_lens=None):
        """What the recogniser hears: enhanced (and mixed) waveforms at its rate."""
        if self.enhancer is None:
            return wavs
        length = wavs.shape[-1]
        model_in = wavs
        if self.enhancer_rate != self.sample_rate:
            model_in = AF.resample(wavs, self.sample_rate, self.enhancer_rate)
        enhanced = self.enhancer.enhance_batch(model_in, lengths=wav_lens).to(wavs.device)
        if self.enhancer_rate != self.sample_rate:
            enhanced = AF.resample(enhanced, self.enhancer_rate, self.sample_rate)
        enhanced = _fit_length(enhanced, length)
        if self.mix_weight is None:
            return enhanced
        return self.mix_weight * enhanced + (1.0 - self.mix_weight) * wavs

    def transcribe_batch(self, wavs, wav_lens=None):
        """Enhances then transcribes a batch [B, samples] at the ASR's rate.

        Returns the recogniser's ``(words, tokens)``.
        """
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        return self.asr.transcribe_batch(self.enhance_batch(wavs, wav_lens), wav_lens)

    def transcribe_file(self, path):
        """Transcribes one audio file (any rate and channel count).

        A missing, unreadable, empty or non-finite file raises
        :class:`~cmse_speechbrain.dataio.AudioFileError` naming it.
        """
        min_samples = 1
        if self.enhancer is not None:
            min_samples = getattr(self.enhancer.hparams, "min_audio_samples", 1)
            min_samples = math.ceil(min_samples * self.sample_rate / self.enhancer_rate)
        wav = read_audio_checked(path, self.sample_rate, min_samples=min_samples)
        words, _ = self.transcribe_batch(wav.unsqueeze(0), torch.tensor([1.0]))
        return str(words[0])


class PocketSphinxASR:
    """pocketsphinx (CMU Sphinx) behind SpeechBrain's ``transcribe_batch``.

    The ``pocketsphinx`` wheel ships a US English acoustic model, language
    model and dictionary, so this recogniser needs no download. A fresh
    decoder is made for every utterance: a pocketsphinx ``Decoder`` adapts
    its feature normalisation across utterances, which would make the
    result depend on the order of the files.

    Arguments
    ---------
    **decoder_options
        Passed to ``pocketsphinx.Decoder`` (e.g. ``hmm``, ``lm``, ``dict``).

    Example
    -------
    >>> asr = PocketSphinxASR()  # doctest: +SKIP
    >>> EnhancedASR(None, asr).transcribe_file("speech.wav")  # doctest: +SKIP
    """

    sample_rate = 16000

    def __init__(self, **decoder_options):
        try:
            import pocketsphinx
        except ImportError as error:
            raise ImportError(
                "PocketSphinxASR needs pocketsphinx: pip install pocketsphinx==5.1.1"
            ) from error
        self._pocketsphinx = pocketsphinx
        self.decoder_options = {"loglevel": "FATAL", **decoder_options}

    def transcribe_waveform(self, wav):
        """Transcribes one waveform [samples] at 16 kHz (upper case)."""
        pcm = (wav.detach().cpu().float().clamp(-1.0, 1.0) * 32767).round().short()
        decoder = self._pocketsphinx.Decoder(**self.decoder_options)
        decoder.start_utt()
        decoder.process_raw(pcm.numpy().tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return normalize_text(hyp.hypstr) if hyp is not None else ""

    def transcribe_batch(self, wavs, wav_lens=None):
        """Transcribes a padded batch [B, samples]; returns ``(words, None)``."""
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        lengths = (wav_lens.cpu() * wavs.shape[-1]).round().long()
        words = [self.transcribe_waveform(w[:n]) for w, n in zip(wavs, lengths)]
        return words, None
