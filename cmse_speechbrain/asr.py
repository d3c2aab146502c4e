"""CMCR-Net as the front end of SpeechBrain speech recognition.

* :class:`EnhancementFrontEnd`: a module an ASR recipe's YAML declares in
  front of its features: waveform in, enhanced waveform out, resampling to
  and from the enhancer's rate, frozen or trained jointly with the
  recogniser, optionally mixing the enhanced and the noisy signal.
* :class:`EnhancedASR`: one object chaining a ``from_hparams`` enhancer
  (``enhance_batch``) before any SpeechBrain ASR interface
  (``transcribe_batch``, e.g. :class:`~cmse_speechbrain.recognizers.PocketSphinxASR`),
  with ``transcribe_file(path)`` and ``from_folder`` (the ASR recipe's export).
* :func:`enhance_and_mix`: the resample, enhance, resample, mix chain both use.
* :func:`enhancer_from_folder`, :func:`enhancer_checkpoint`,
  :func:`shipped_enhancer_path`: an enhancer model folder, for YAML.
* :class:`CharCTCModel`: the small character CTC recogniser that the ASR
  recipe (``recipes/VoiceBank/ASR``) trains; it lives here because its
  exported ``EncoderASR`` folders build it by this class path.

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import math
import pathlib

import torch
import torchaudio.functional as AF
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.CRDNN import CRDNN
from speechbrain.nnet.linear import Linear
from speechbrain.processing.features import InputNormalization

from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.dsp import fit_length
from cmse_speechbrain.inference import shipped_model_folder
from cmse_speechbrain.init_record import record_init


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
    from cmse_speechbrain.safe_yaml import UNSAFE_LOAD_ERRORS, describe_load_error

    path = pathlib.Path(source) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such enhancer checkpoint")
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except UNSAFE_LOAD_ERRORS as error:
        raise ValueError(
            f"{path}: cannot be loaded safely ({describe_load_error(error)})"
        ) from None
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


def enhance_and_mix(
    enhance, wavs, wav_lens, input_sample_rate, model_sample_rate, mix_weight=None
):
    """Enhances waveforms at the enhancer's rate and mixes in some of the input.

    Resamples ``wavs`` to ``model_sample_rate`` (differentiably), enhances,
    resamples back, crops or pads to the input's length and returns
    ``w * enhanced + (1 - w) * wavs`` (``w``: ``mix_weight``).

    Arguments
    ---------
    enhance : callable
        ``enhance(wavs, wav_lens)`` at ``model_sample_rate``: the enhanced
        waveforms, or a tuple whose first item they are.
    wavs : torch.Tensor
        [B, samples] at ``input_sample_rate``.
    wav_lens : torch.Tensor, optional
        Relative lengths [B].
    input_sample_rate : int
        Rate of ``wavs`` and of the output.
    model_sample_rate : int
        Rate ``enhance`` works at.
    mix_weight : float or torch.Tensor, optional
        None: the enhanced signal alone.

    Returns
    -------
    torch.Tensor
        [B, samples] at ``input_sample_rate``, on the device of ``wavs``.

    Example
    -------
    >>> halve = lambda wavs, wav_lens: wavs / 2
    >>> wavs = torch.ones(1, 8000)
    >>> mixed = enhance_and_mix(halve, wavs, None, 8000, 16000, mix_weight=0.5)
    >>> mixed.shape, round(float(mixed[0, 4000]), 3)
    (torch.Size([1, 8000]), 0.75)
    """
    length = wavs.shape[-1]
    resample = model_sample_rate != input_sample_rate
    model_in = (
        AF.resample(wavs, input_sample_rate, model_sample_rate) if resample else wavs
    )
    enhanced = enhance(model_in, wav_lens)
    if isinstance(enhanced, (tuple, list)):
        enhanced = enhanced[0]
    enhanced = enhanced.to(wavs.device)
    if resample:
        enhanced = AF.resample(enhanced, model_sample_rate, input_sample_rate)
    enhanced = fit_length(enhanced, length)
    if mix_weight is None:
        return enhanced
    return mix_weight * enhanced + (1.0 - mix_weight) * wavs


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
    >>> bypass = EnhancementFrontEnd(enhancer, input_sample_rate=8000, mix_weight=0.0)
    >>> bool(bypass(wavs).eq(wavs).all())
    True
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
                    "learnable_mix needs an initial "
                    f"mix_weight in (0, 1), got {mix_weight}"
                )
            logit = math.log(mix_weight / (1.0 - mix_weight))
            self.mix_logit = torch.nn.Parameter(torch.tensor(float(logit)))
        else:
            self.mix_logit = None
        fixed = (
            None
            if mix_weight is None or learnable_mix
            else torch.tensor(float(mix_weight))
        )
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

    def _run_enhancer(self, wavs, wav_lens):
        """The enhancer at its own rate; without gradient when frozen."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            return self.enhancer(wavs, wav_lens)

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
            [B, samples] at ``input_sample_rate``; the input itself for a fixed
            mix weight of 0 (the enhancer is not run).
        """
        if self.mix_logit is None and self.fixed_mix_weight is not None:
            if float(self.fixed_mix_weight) == 0.0:
                return wavs
        return enhance_and_mix(
            self._run_enhancer,
            wavs,
            wav_lens,
            self.input_sample_rate,
            self.model_sample_rate,
            self.mix_weight,
        )


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
        :class:`~cmse_speechbrain.recognizers.PocketSphinxASR`, ...).
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
    >>> recipe_data = (
    ...     pathlib.Path(__file__).parents[1] / "recipes/VoiceBank/ASR/mini_asr"
    ... )
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
    def from_folders(
        cls,
        enhancer_source,
        asr_source,
        asr_class=None,
        savedir=None,
        mix_weight=None,
        run_opts=None,
        trust_code=False,
    ):
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
            asr_class,
            asr_source,
            run_opts=run_opts,
            trust_code=trust_code,
            savedir=str(savedir or asr_source),
        )
        return cls(enhancer, asr, mix_weight=mix_weight)

    @classmethod
    def from_folder(cls, folder, **kwargs):
        """Loads a folder written by the ASR recipe (``enhancer/``, ``asr/``
        and ``pipeline.json`` with the mix weight)."""
        folder = pathlib.Path(folder)
        settings_path = folder / "pipeline.json"
        settings = (
            json.loads(settings_path.read_text()) if settings_path.is_file() else {}
        )
        kwargs.setdefault("mix_weight", settings.get("mix_weight"))
        return cls.from_folders(folder / "enhancer", folder / "asr", **kwargs)

    @torch.no_grad()
    def enhance_batch(self, wavs, wav_lens=None):
        """What the recogniser hears: enhanced (and mixed) waveforms at its rate."""
        if self.enhancer is None:
            return wavs
        return enhance_and_mix(
            lambda model_in, lens: self.enhancer.enhance_batch(model_in, lengths=lens),
            wavs,
            wav_lens,
            self.sample_rate,
            self.enhancer_rate,
            self.mix_weight,
        )

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
