"""Speech recognisers behind SpeechBrain's ``transcribe_batch`` contract.

* :func:`normalize_text`: the one text normalisation of references and
  hypotheses (upper case, no punctuation) before word error rates.
* :class:`PocketSphinxASR`: pocketsphinx behind ``transcribe_batch`` (its
  wheel ships an English model), for
  :class:`~cmse_speechbrain.asr.EnhancedASR` and the WER benchmarks.

Authors
 * cmse-speechbrain contributors 2026
"""

import re

import torch


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
    >>> from cmse_speechbrain.asr import EnhancedASR
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
