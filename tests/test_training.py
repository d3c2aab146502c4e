"""Optimisation steps of the full objective on real audio lower the loss,
and the CM and CR terms keep their stated share of the gradient."""

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


def test_training_steps_lower_the_loss(mini_voicebank):
    torch.manual_seed(0)
    names = ["p287_001", "p287_002", "p287_004", "p287_006"]
    segment = 24000
    noisy = torch.stack(
        [
            read_audio_checked(mini_voicebank / f"noisy_trainset_28spk_wav/{n}.flac")[
                :segment
            ]
            for n in names
        ]
    )
    clean = torch.stack(
        [
            read_audio_checked(mini_voicebank / f"clean_trainset_28spk_wav/{n}.flac")[
                :segment
            ]
            for n in names
        ]
    )
    lengths = torch.ones(len(names))
    model = CMCRNet(channels=[4, 8, 8, 16, 16], d_model=16, nhead=2)
    rep = RandomConvRepresentation(channels=[8, 16, 16])
    objective = CMCRObjective(
        ReconstructionLoss(),
        ContrastiveRegularization(rep, [0.25, 0.5, 1.0]),
        StreamContrastiveLoss(rep, stream_size=16),
        aux_start_steps=5,
        aux_ramp_steps=5,
        rebalance_interval=5,
    )
    optimizer = torch.optim.Adam(
        list(model.parameters()) + list(objective.parameters()), lr=1e-3
    )
    recon, shares = [], []
    for _ in range(30):
        enhanced, aux = model(noisy, lengths)
        loss, terms = objective(enhanced, clean, noisy, lengths, aux["streams"])
        if objective.needs_rebalance():
            shares.append(objective.rebalance(terms, model.parameters()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        recon.append(terms["recon"].item())
    # the reconstruction itself falls (not only the total)
    assert sum(recon[-5:]) / 5 < 0.8 * sum(recon[:5]) / 5, recon
    # after the warm-up, each auxiliary term has on average about its share
    # (0.1) of the gradient; between two measurements it drifts
    late = shares[1:]
    for name in ["cm", "cr"]:
        mean = sum(share[name] for share in late) / len(late)
        assert 0.05 < mean < 0.2, shares
