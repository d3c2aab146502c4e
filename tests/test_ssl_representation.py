"""CR in a self-supervised model's space, through SpeechBrain's own wrapper.

No pretrained weights can be had offline here: the wav2vec 2.0 is a small
randomly initialised model, saved to a local folder and loaded by
``speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2`` exactly as a
user's pretrained folder would be. It tests the loading and gradient path,
not the quality of a pretrained representation.
"""

import pytest
import torch

from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.losses import ContrastiveRegularization, SSLRepresentation

transformers = pytest.importorskip("transformers")


@pytest.fixture
def tiny_wav2vec2_folder(tmp_path):
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    folder = tmp_path / "tiny_w2v2"
    transformers.Wav2Vec2Model(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return folder


def test_cr_with_speechbrain_wav2vec2_wrapper(
    tiny_wav2vec2_folder, tmp_path, mini_voicebank
):
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2

    ssl = Wav2Vec2(
        str(tiny_wav2vec2_folder),
        save_path=str(tmp_path / "cache"),
        output_all_hiddens=True,
        freeze=True,
    )
    representation = SSLRepresentation(ssl, layer_groups=[[1, 2], [3, 4]])
    cr = ContrastiveRegularization(representation, layer_weights=[1.0, 0.5])
    noisy = read_audio_checked(
        mini_voicebank / "noisy_trainset_28spk_wav/p287_002.flac"
    )[None, :32000]
    clean = read_audio_checked(
        mini_voicebank / "clean_trainset_28spk_wav/p287_002.flac"
    )[None, :32000]
    enhanced = noisy.clone().requires_grad_(True)
    loss = cr(enhanced, clean, noisy)
    loss.backward()
    assert enhanced.grad.abs().sum() > 0  # gradient reaches the enhanced signal
    assert not any(p.requires_grad for p in ssl.parameters())
    assert cr(clean, clean, noisy) < cr(0.5 * (clean + noisy), clean, noisy) < loss
    representation.train()
    assert not ssl.training  # stays frozen in eval mode


def test_missing_layers_are_reported(tiny_wav2vec2_folder, tmp_path):
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2

    ssl = Wav2Vec2(
        str(tiny_wav2vec2_folder),
        save_path=str(tmp_path / "cache"),
        output_all_hiddens=True,
        freeze=True,
    )
    representation = SSLRepresentation(ssl)  # default groups need 13 hidden states
    with pytest.raises(ValueError, match="has 5 hidden states"):
        representation(torch.zeros(1, 16000))
