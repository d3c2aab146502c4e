"""TorchScript and ONNX export of the network, against eager, on real audio."""

import shutil

import pytest
import torch

from cmse_speechbrain.cmcr_net import CMCRNet
from cmse_speechbrain.dataio import read_audio_checked
from cmse_speechbrain.export import (
    export_network_files,
    export_onnx,
    export_torchscript,
    noisy_spectrum,
    spectrum_to_waveform,
)
from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder

from conftest import MINI_VOICEBANK

SMALL = dict(channels=[4, 8, 8, 16, 16], d_model=16, nhead=2)


@pytest.fixture(scope="module")
def real_batch():
    """Two real noisy test utterances (p232, p257), 1.7 s each."""
    folder = MINI_VOICEBANK / "noisy_testset_wav"
    files = [folder / "p232_001.flac", folder / "p257_001.flac"]
    return torch.stack([read_audio_checked(f)[:27000] for f in files])


def shipped_model():
    return EnhanceCMCR.from_hparams(
        source=str(shipped_model_folder())
    ).mods.enhance_model.eval()


MODELS = {
    "shipped": shipped_model,
    "causal_windowed": lambda: CMCRNet(
        causal=True, attention_window=16, **SMALL
    ).eval(),
}


def eager_and_spectrum(model, audio):
    with torch.no_grad():
        eager, _ = model(audio)
    return eager, noisy_spectrum(model, audio)


@pytest.mark.parametrize("name", list(MODELS))
def test_torchscript_agrees_with_eager(tmp_path, real_batch, name):
    model = MODELS[name]()
    path = export_torchscript(model, tmp_path / "net.pt", example_seconds=1.0)
    loaded = torch.jit.load(str(path))
    # another batch size and length than the tracing example
    eager, spec = eager_and_spectrum(model, real_batch)
    with torch.no_grad(), torch.jit.optimized_execution(False):  # no JIT warm-up
        exported = spectrum_to_waveform(model, loaded(spec), real_batch.shape[1])
    assert (exported - eager).abs().max() < 1e-4


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_agrees_with_eager(tmp_path, real_batch, name):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = MODELS[name]()
    path = export_onnx(model, tmp_path / "net.onnx", example_seconds=1.0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    eager, spec = eager_and_spectrum(model, real_batch)
    (enhanced,) = session.run(None, {"noisy_spectrum": spec.numpy()})
    exported = spectrum_to_waveform(
        model, torch.from_numpy(enhanced), real_batch.shape[1]
    )
    assert (exported - eager).abs().max() < 1e-4
    import onnx

    assert onnx.load(str(path)).opset_import[0].version >= 17
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "old.onnx", opset=13)


def test_export_network_files_into_a_model_folder(tmp_path, tiny_model_folder):
    pytest.importorskip("onnx")
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    written = export_network_files(folder)
    assert [p.name for p in written] == ["enhance_model.pt", "enhance_model.onnx"]
    assert all(p.stat().st_size > 0 for p in written)
