"""cmse_speechbrain: CMCR-Net speech enhancement as a SpeechBrain plugin.

Modules (a flat package, one subject each):

* the model: ``cmcr_net`` (CMCR-Net), ``collaboration`` (the collaboration
  module's attention blocks), ``init_record`` (constructor arguments kept
  for export);
* training: ``losses`` (reconstruction, contrastive regularization, the
  collaboration module's contrastive loss, the objective), ``brain``
  (``CMSEBrain``), ``recipe`` (what the recipes share), ``mixing``
  (on-the-fly mixing), ``dataio`` (checked audio I/O and data pipelines),
  ``checkpoints``, ``speaker_encoder`` and ``distillmos_encoder`` (pretrained
  CR spaces), ``reporting`` (test and DNSMOS reports, training curves),
  ``diagnostics`` (what the collaboration module's streams hold);
* using a model: ``inference`` (``EnhanceCMCR``), ``streaming``
  (``StreamingEnhancer``), ``corpus`` (corpus enhancement), ``export``
  (model folders, TorchScript, ONNX), ``safe_yaml`` (loading model folders
  without running their code), ``asr`` (the ASR front end, ``EnhancedASR``),
  ``recognizers`` (pocketsphinx), ``asr_recipe`` (the ASR recipes' Brain
  and run), ``peers`` (adapters of other denoisers);
* evaluation: ``metrics``, ``evaluation`` (scoring a file against its
  reference), ``report`` (the listening page), ``cli`` (the command-line
  tools).

The names of :data:`__all__` are imported on first use, so ``import
cmse_speechbrain`` stays light:

>>> import cmse_speechbrain
>>> cmse_speechbrain.EnhanceCMCR.__module__
'cmse_speechbrain.inference'
"""

import importlib

__version__ = "0.1.0"

#: The public API: name -> the module that defines it.
_PUBLIC = {
    "CMCRNet": "cmcr_net",
    "CollaborationModule": "collaboration",
    "CMCRObjective": "losses",
    "ReconstructionLoss": "losses",
    "ContrastiveRegularization": "losses",
    "CurricularNegative": "losses",
    "StreamContrastiveLoss": "losses",
    "RandomConvRepresentation": "losses",
    "SSLRepresentation": "losses",
    "DistillMOSRepresentation": "distillmos_encoder",
    "SpeakerEncoderRepresentation": "speaker_encoder",
    "CMSEBrain": "brain",
    "OnTheFlyMixer": "mixing",
    "EnhanceCMCR": "inference",
    "shipped_model_folder": "inference",
    "StreamingEnhancer": "streaming",
    "EnhancedASR": "asr",
    "EnhancementFrontEnd": "asr",
    "export_model": "export",
    "pause_attenuation": "metrics",
    "pesq_wb": "metrics",
    "stoi_score": "metrics",
}

MODULES = [
    "asr",
    "asr_recipe",
    "brain",
    "checkpoints",
    "cli",
    "cmcr_net",
    "collaboration",
    "corpus",
    "dataio",
    "diagnostics",
    "distillmos_encoder",
    "dsp",
    "evaluation",
    "export",
    "inference",
    "init_record",
    "losses",
    "metrics",
    "mixing",
    "peers",
    "recipe",
    "recognizers",
    "report",
    "reporting",
    "safe_yaml",
    "speaker_encoder",
    "streaming",
]

__all__ = ["__version__", *_PUBLIC, *MODULES]


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    elif name in MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
