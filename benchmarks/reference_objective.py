"""The CMCR-Net objective as it was computed before the training step was
made cheaper (issue 28): each frozen representation in a pass of its own
(CR: clean, noisy; CM loss: speech, noise) and the CM loss's read-out
applied to the streams, its similarities in the representation space.

The reference of ``tests/test_objective_reference.py`` (same loss, same
gradients as ``cmse_speechbrain.losses.CMCRObjective``) and the "before"
of ``training_throughput.py``.

Authors
 * cmse-speechbrain contributors 2026
"""

import torch
import torch.nn.functional as F

from cmse_speechbrain.losses import _time_mask, utterance_l1, utterance_rms


def reference_cr(cr, enhanced, clean, noisy, lengths):
    """CR with a frozen pass per signal."""

    def unit(wavs):
        return wavs / utterance_rms(wavs, lengths)[:, None]

    enhanced_feats = cr.representation(unit(enhanced), lengths)
    with torch.no_grad():
        clean_feats = cr.representation(unit(clean), lengths)
        noisy_feats = cr.representation(unit(noisy), lengths)
    total = enhanced.new_zeros(enhanced.shape[0])
    for weight, enh, pos, neg in zip(
        cr.layer_weights, enhanced_feats, clean_feats, noisy_feats
    ):
        d_pos = utterance_l1(pos, enh, lengths)
        d_neg = utterance_l1(neg, enh, lengths)
        push = torch.minimum(d_neg, cr.push_limit * utterance_l1(pos, neg, lengths))
        total = total + weight * d_pos / (d_pos + push + cr.eps)
    return (total / sum(cr.layer_weights)).mean()


def reference_info_nce(loss, anchor, positive, negative, weights):
    anchor, positive, negative = (
        F.normalize(x, dim=-1) for x in (anchor, positive, negative)
    )
    same = (anchor * positive).sum(-1, keepdim=True)
    other_kind = (anchor * negative).sum(-1, keepdim=True)
    others = torch.einsum("btd,ctd->btc", anchor, positive)
    diagonal = torch.eye(anchor.shape[0], dtype=torch.bool)
    others = others.masked_fill(diagonal[:, None, :], float("-inf"))
    logits = torch.cat([same, other_kind, others], dim=-1) / loss.temperature
    per_frame = -torch.log_softmax(logits, dim=-1)[..., 0]
    return (per_frame * weights).sum() / weights.sum().clamp(min=1.0)


def reference_stream_loss(loss, streams, clean, noise, lengths):
    """The CM loss with the read-out applied to the streams, a frozen pass
    per signal."""
    level = utterance_rms(clean + noise, lengths)[:, None]
    with torch.no_grad():
        speech = loss.representation(clean / level, lengths)[loss.layer].flatten(
            start_dim=2
        )
        noise_feats = loss.representation(noise / level, lengths)[loss.layer].flatten(
            start_dim=2
        )
    frames = min(speech.shape[1], streams[0][0].shape[1])
    speech, noise_feats = speech[:, :frames], noise_feats[:, :frames]
    valid = _time_mask(lengths, frames, speech.device)
    if valid is None:
        valid = torch.ones(speech.shape[:2])
    speech_active = loss._activity(clean, frames) * valid
    noise_active = loss._activity(noise, frames) * valid
    scale = (speech.pow(2).sum(-1) + noise_feats.pow(2).sum(-1)).clamp(min=1e-6)
    total = 0.0
    for relevant, irrelevant, *_ in streams:
        rel = loss.readout(relevant[:, :frames])
        irr = loss.readout(irrelevant[:, :frames])
        contrast = reference_info_nce(loss, rel, speech, noise_feats, speech_active)
        contrast = contrast + reference_info_nce(
            loss, irr, noise_feats, speech, noise_active
        )
        residual = (rel - speech).pow(2).sum(-1) + (irr - noise_feats).pow(2).sum(-1)
        decomposition = (residual / scale * valid).sum() / valid.sum()
        total = total + contrast + loss.decomposition_weight * decomposition
    return total / len(streams)


def reference_objective(objective, enhanced, clean, noisy, lengths=None, streams=None):
    """``objective(enhanced, clean, noisy, lengths, streams)`` of a
    :class:`CMCRObjective`, computed the straightforward way (its step
    counter is not advanced)."""
    scale = utterance_rms(noisy, lengths)
    terms = objective.reconstruction.terms(enhanced, clean, lengths, scale)
    terms["recon"] = loss = objective.reconstruction.combine(terms)
    ramp = objective.ramp()
    if objective.stream_contrast is not None and objective.shares["cm"] > 0 and streams:
        terms["cm"] = reference_stream_loss(
            objective.stream_contrast, streams, clean, noisy - clean, lengths
        )
        loss = loss + ramp * objective.weights[0] * terms["cm"]
    if objective.contrastive_regularization is not None and objective.shares["cr"] > 0:
        terms["cr"] = reference_cr(
            objective.contrastive_regularization, enhanced, clean, noisy, lengths
        )
        loss = loss + ramp * objective.weights[1] * terms["cr"]
    return loss, terms
