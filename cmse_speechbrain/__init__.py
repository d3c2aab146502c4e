"""cmse_speechbrain: CMCR-Net speech enhancement as a SpeechBrain plugin.

Modules: ``cmcr_net`` (the network), ``losses`` (contrastive regularization,
the collaboration module's contrastive loss, reconstruction), ``brain``
(``CMSEBrain``), ``dataio`` (checked audio I/O and data pipelines),
``metrics``, ``reporting`` (test and DNSMOS reports, training curves),
``checkpoints``, ``inference`` (``EnhanceCMCR``), ``export``
and ``cli``.
"""

__version__ = "0.1.0"
