"""The objective as trained (one frozen pass, the CM loss in the stream
space) against its straightforward formulation
(``benchmarks/reference_objective.py``): same loss, same gradients."""

import pathlib
import sys

import pytest
import torch

from cmse_speechbrain.cmcr_net import CMCRNet
from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.losses import (
    CMCRObjective,
    ContrastiveRegularization,
    RandomConvRepresentation,
    ReconstructionLoss,
    StreamContrastiveLoss,
)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_objective import reference_objective  # noqa: E402


@pytest.fixture
def batch(mini_voicebank):
    """Three real VoiceBank-DEMAND training pairs, 2 s each, the last one
    padded (relative lengths 1, 1, 0.8)."""
    names = ["p287_002", "p287_003", "p287_004"]
    pairs = [
        [
            read_audio_checked(
                mini_voicebank / f"{sub}_trainset_28spk_wav/{name}.flac"
            )[:32000]
            for sub in ["noisy", "clean"]
        ]
        for name in names
    ]
    noisy = torch.stack([p[0] for p in pairs])
    clean = torch.stack([p[1] for p in pairs])
    noisy[2, 25600:] = 0.0
    clean[2, 25600:] = 0.0
    return noisy, clean, torch.tensor([1.0, 1.0, 0.8])


@pytest.mark.parametrize("d_model", [16, 64])
def test_objective_matches_its_reference(batch, d_model):
    noisy, clean, lengths = batch
    torch.manual_seed(0)
    model = CMCRNet(channels=[4, 8, 8, 16, 16], d_model=d_model, nhead=2)
    rep = RandomConvRepresentation()
    objective = CMCRObjective(
        ReconstructionLoss(),
        ContrastiveRegularization(rep),
        StreamContrastiveLoss(rep, stream_size=d_model),
        aux_start_steps=0,
        aux_ramp_steps=1,
    ).eval()
    objective.weights.copy_(torch.tensor([0.3, 2.0]))
    parameters = [
        p
        for p in list(model.parameters()) + list(objective.parameters())
        if p.requires_grad
    ]
    results = []
    for compute in [objective, lambda *args: reference_objective(objective, *args)]:
        enhanced, aux = model(noisy, lengths)
        loss, terms = compute(enhanced, clean, noisy, lengths, aux["streams"])
        grads = torch.autograd.grad(loss, parameters)
        results.append((loss, terms, grads))
    (loss, terms, grads), (ref_loss, ref_terms, ref_grads) = results
    assert float(terms["cm"].detach()) > 0.1 and float(terms["cr"].detach()) > 0.1
    for name in ["cm", "cr", "recon"]:
        torch.testing.assert_close(terms[name], ref_terms[name], rtol=1e-5, atol=0.0)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0.0)
    # per tensor, relative to its own size, up to the rounding of the whole
    # gradient (some biases before a BatchNorm get rounding noise only)
    total = torch.sqrt(sum(ref.pow(2).sum() for ref in ref_grads))
    for grad, ref in zip(grads, ref_grads):
        assert float((grad - ref).norm()) <= 1e-4 * float(ref.norm()) + 1e-6 * float(
            total
        )
