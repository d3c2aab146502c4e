"""Writes a trained ASR recipe's model as loadable folders.

* :func:`export_encoder_asr`: the recogniser
  (:class:`~cmse_speechbrain.asr.CharCTCModel`) as a SpeechBrain
  ``EncoderASR`` folder.
* :func:`export_pipeline`: front end and recogniser as a
  :meth:`~cmse_speechbrain.asr.EnhancedASR.from_folder` folder.

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import pathlib

import torch

from cmse_speechbrain.dataio import atomic_output
from cmse_speechbrain.export import inference_yaml
from cmse_speechbrain.init_record import init_yaml


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
