"""The trained model shipped in the package: loads offline and enhances real audio."""

import numpy as np
import torch

from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder
from cmse_speechbrain.metrics import pesq_wb
from conftest import MINI_VOICEBANK


def test_shipped_model_raises_pesq_on_real_voicebank_test_pairs():
    """The 16 shipped VoiceBank-DEMAND test pairs (speakers and DEMAND noise
    unseen in training): mean PESQ-WB of the enhanced above the noisy input's."""
    folder = shipped_model_folder()
    size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    assert size_mb < 8, size_mb
    enhancer = EnhanceCMCR.from_hparams(source=str(folder))
    noisy_scores, enhanced_scores = [], []
    for noisy_path in sorted((MINI_VOICEBANK / "noisy_testset_wav").glob("*.flac")):
        clean = read_audio_checked(MINI_VOICEBANK / "clean_testset_wav" / noisy_path.name)
        noisy = read_audio_checked(noisy_path)
        enhanced = enhancer.enhance_batch(noisy)
        assert torch.isfinite(enhanced).all()
        noisy_scores.append(pesq_wb(noisy, clean))
        enhanced_scores.append(pesq_wb(enhanced, clean))
    assert len(noisy_scores) == 16
    assert np.mean(enhanced_scores) > np.mean(noisy_scores) + 0.1
