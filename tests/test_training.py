"""A few optimisation steps of the full objective on real audio lower the loss."""

import torch

from cmse_speechbrain.cmcr_net import CMCRNet
from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.losses import (
    ContrastiveRegularization,
    RandomConvRepresentation,
    StreamContrastiveLoss,
)
from speechbrain.nnet.losses import mse_loss


def test_training_steps_lower_the_loss(mini_voicebank):
    torch.manual_seed(0)
    names = ["p287_001", "p287_002", "p287_004", "p287_006"]
    segment = 24000
    noisy = torch.stack([
        read_audio_checked(mini_voicebank / f"noisy_trainset_28spk_wav/{n}.flac")[:segment] for n in names
    ])
    clean = torch.stack([
        read_audio_checked(mini_voicebank / f"clean_trainset_28spk_wav/{n}.flac")[:segment] for n in names
    ])
    lengths = torch.ones(len(names))
    model = CMCRNet(channels=[4, 8, 8, 16, 16], d_model=16, nhead=2)
    cm_loss = StreamContrastiveLoss()
    cr_loss = ContrastiveRegularization(RandomConvRepresentation(channels=[8, 16, 16]), [0.25, 0.5, 1.0])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def objective():
        enhanced, aux = model(noisy, lengths)
        reference = model.reference_features(clean)
        return (
            mse_loss(enhanced, clean, lengths)
            + 0.01 * cm_loss(aux["streams"], reference, lengths)
            + 0.01 * cr_loss(enhanced, clean, noisy, lengths)
        )

    losses = []
    for _ in range(30):
        loss = objective()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
