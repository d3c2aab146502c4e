"""Causal windowed CMCR-Net and its StreamingEnhancer, on real audio."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from cmse_speechbrain.cmcr_net import CMCRNet
from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.streaming import StreamingEnhancer

from conftest import MINI_VOICEBANK, ROOT

SMALL = dict(channels=[4, 8, 8, 16, 16], d_model=16, nhead=2)


def causal_model(window=8, seed=0, **extra):
    """A small causal model with random weights and BatchNorm statistics.

    It maps the spectrum directly (``output_type="mapping"``): the untrained
    complex mask starts near identity and would hide the network's work.
    """
    torch.manual_seed(seed)
    model = CMCRNet(
        causal=True,
        attention_window=window,
        output_type="mapping",
        **{**SMALL, "time_kernel": 2, **extra},  # the authors' causal kernel
    )
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Per-frame work is tiny: on a busy 2-core machine, intra-op threads
    only wait for each other (as a real-time stream would run: one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real_noisy():
    """Real noisy VoiceBank-DEMAND test speech (p232), 2.5 s."""
    return read_audio_checked(MINI_VOICEBANK / "noisy_testset_wav/p232_001.flac")[
        None, :40000
    ]


def stream(streamer, audio, block):
    pieces = [streamer(piece) for piece in audio.split(block, dim=1)]
    return torch.cat(pieces + [streamer.flush()], dim=1)


@pytest.mark.parametrize("block", [100, 256, 257, 4097, 20000])
def test_streaming_equals_offline_causal_model(real_noisy, block):
    model = causal_model()
    with torch.no_grad():
        offline, _ = model(real_noisy)
    streamer = StreamingEnhancer(model)
    streamed = stream(streamer, real_noisy, block)
    assert streamed.shape == offline.shape
    assert torch.allclose(streamed, offline, atol=1e-5), (
        (streamed - offline).abs().max()
    )


def test_one_sample_blocks_and_uneven_blocks(real_noisy):
    model = causal_model(window=4)
    audio = real_noisy[:, :6000]
    with torch.no_grad():
        offline, _ = model(audio)
    streamer = StreamingEnhancer(model, fold=False, script=False)  # the model itself
    assert torch.allclose(stream(streamer, audio, 1), offline, atol=1e-5)
    sizes = torch.randint(
        1, 300, (30,), generator=torch.Generator().manual_seed(0)
    ).tolist()
    sizes.append(audio.shape[1] - sum(sizes))
    streamer = StreamingEnhancer(model)
    pieces = [streamer(piece) for piece in audio.split(sizes, dim=1)]
    streamed = torch.cat(pieces + [streamer.flush()], dim=1)
    assert torch.allclose(streamed, offline, atol=1e-5)


def test_output_is_final_as_soon_as_the_latency_allows(real_noisy):
    streamer = StreamingEnhancer(causal_model())
    produced = 0
    for consumed in range(256, 8192, 256):
        produced += streamer(real_noisy[:, consumed - 256 : consumed]).shape[1]
        # every sample older than one window (n_fft = 512) is out
        assert consumed - produced <= streamer.latency_samples
    assert streamer.latency_seconds == pytest.approx(0.032)


def test_state_carries_across_calls_and_resets(real_noisy):
    model = causal_model()
    first, second = real_noisy[:, :12000], real_noisy[:, 12000:30000]
    with torch.no_grad():
        expected_second, _ = model(second)
        joined, _ = model(torch.cat([first, second], dim=1))
    streamer = StreamingEnhancer(model)
    head = streamer(first)
    tail = stream(streamer, second, 1000)  # same stream: carries the state
    assert torch.allclose(torch.cat([head, tail], dim=1), joined, atol=1e-5)
    # after flush, and after reset() mid-stream, a new signal starts afresh
    assert torch.allclose(stream(streamer, second, 3000), expected_second, atol=1e-5)
    streamer(first[:, :5000])
    streamer.reset()
    assert torch.allclose(stream(streamer, second, 3000), expected_second, atol=1e-5)


def test_batch_of_streams(real_noisy):
    model = causal_model()
    audio = torch.cat([real_noisy[:, :12000], real_noisy[:, 12000:24000]])
    with torch.no_grad():
        offline, _ = model(audio)
    assert torch.allclose(
        stream(StreamingEnhancer(model, batch_size=2), audio, 999), offline, atol=1e-5
    )


def test_streaming_config_of_the_causal_yaml(real_noisy):
    with open(ROOT / "hparams/cmse_causal.yaml") as fin:
        hparams = load_hyperpyyaml(fin, {"output_folder": "/tmp/cmse_causal_test"})
    model = hparams["model"].eval()
    assert model.config["causal"] and model.config["attention_window"] == 64
    audio = real_noisy[:, :24000]
    with torch.no_grad():
        offline, _ = model(audio)
    assert torch.allclose(
        stream(StreamingEnhancer(model), audio, 256), offline, atol=1e-5
    )


def test_windowed_attention_ignores_the_future(real_noisy):
    model = causal_model()
    changed = real_noisy.clone()
    changed[:, 20000:] = torch.flip(changed[:, 20000:], dims=[1])
    with torch.no_grad():
        before, _ = model(real_noisy)
        after, _ = model(changed)
    # output samples wholly before the change's first STFT frame agree
    assert torch.allclose(before[:, : 20000 - 512], after[:, : 20000 - 512], atol=1e-6)
    assert not torch.allclose(before[:, 20000:], after[:, 20000:], atol=1e-3)


def test_windowed_attention_forgets_beyond_the_window(real_noisy, monkeypatch):
    model = causal_model(window=4)
    # the input level is a running mean over all past frames (it rescales,
    # it does not mix frames): hold it fixed to see the attention's reach
    monkeypatch.setattr(model, "input_level", lambda spec: torch.ones(1, 1, 1, 1))
    reach = model.receptive_field_frames()
    assert reach == 10 + 9 * 3
    changed = real_noisy.clone()
    changed[:, :8000] = 0.0  # silence the first half second
    # frames after the change by more than the receptive field do not see it
    unaffected = (8000 // 256 + reach + 2) * 256
    with torch.no_grad():
        before, _ = model(real_noisy)
        after, _ = model(changed)
        unbounded = causal_model(window=None)
        monkeypatch.setattr(
            unbounded, "input_level", lambda spec: torch.ones(1, 1, 1, 1)
        )
        assert unbounded.receptive_field_frames() is None
        far_before, _ = unbounded(real_noisy)
        far_after, _ = unbounded(changed)
    assert unaffected < 30000
    assert (before - after)[:, unaffected:].abs().max() < 1e-7
    assert (before - after)[:, 8000:unaffected].abs().max() > 1e-3
    # without a window the same change still reaches there (weakly: an
    # untrained attention spreads over all past frames), so the test can fail
    assert (far_before - far_after)[:, unaffected:].abs().max() > 1e-6


def test_long_input_windowed_attention_runs_in_blocks(real_noisy):
    model = causal_model()
    long = real_noisy.repeat(1, 4)  # 10 s = 626 frames > one block of 512
    with torch.no_grad():
        blocked, _ = model(long)
    assert torch.allclose(
        stream(StreamingEnhancer(model), long, 16000), blocked, atol=1e-5
    )


@pytest.mark.parametrize("fold, script", [(True, False), (False, True)])
def test_each_speed_pass_alone(real_noisy, fold, script):
    model = causal_model(window=4)
    audio = real_noisy[:, :8000]
    with torch.no_grad():
        offline, _ = model(audio)
    streamer = StreamingEnhancer(model, fold=fold, script=script)
    assert torch.allclose(stream(streamer, audio, 256), offline, atol=1e-5)


def test_the_model_streams_through_its_own_blocks(real_noisy):
    model = causal_model(window=4)
    streamer = StreamingEnhancer(model, fold=False, script=False)
    assert streamer.network is model  # no second copy of the network
    # each block's state holds at most the past frames it needs: one for
    # the convolutions (time_kernel - 1), attention_window - 1 for the CM
    streamer(real_noisy[:, :8000])
    cached = [t for s in streamer.network_state for t in _tensors(s)]
    assert (
        cached and max(t.shape[1] if t.dim() == 3 else t.shape[-1] for t in cached) <= 3
    )


def _tensors(state):
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for item in state for t in _tensors(item)]


def test_longer_time_kernel_streams(real_noisy):
    model = causal_model(time_kernel=3)
    audio = real_noisy[:, :8000]
    with torch.no_grad():
        offline, _ = model(audio)
    assert torch.allclose(
        stream(StreamingEnhancer(model), audio, 300), offline, atol=1e-5
    )


def test_streaming_refuses_models_it_cannot_stream():
    with pytest.raises(ValueError, match="causal"):
        StreamingEnhancer(CMCRNet(**SMALL))
    with pytest.raises(ValueError, match="attention_window"):
        StreamingEnhancer(CMCRNet(causal=True, **SMALL))
    with pytest.raises(ValueError, match="lookahead"):
        StreamingEnhancer(
            CMCRNet(causal=True, attention_window=8, lookahead_frames=1, **SMALL)
        )
    with pytest.raises(ValueError, match="causal=True"):
        CMCRNet(attention_window=8, **SMALL)
