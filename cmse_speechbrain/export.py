"""Turns a training run's output folder into a ``from_hparams`` model folder.

``export_model(run_folder, destination)`` takes the best checkpoint (by
validation PESQ) of ``run_folder/save`` and writes ``destination`` with:

* ``hyperparams.yaml``: the inference YAML of :class:`EnhanceCMCR`, with the
  network rebuilt from the run's own ``hyperparams.yaml``;
* ``enhance_model.ckpt``: the network's weights;
* ``checkpoint_meta.json``: the checkpoint's validation scores.

The folder appears whole or not at all (written aside, then renamed).

``export_torchscript(model, path)`` and ``export_onnx(model, path)`` write
the network between STFT and iSTFT (:class:`SpectrumEnhancer`: noisy
spectrum [B, 2, F, T] in, enhanced spectrum out, batch and frames dynamic)
as TorchScript or ONNX (opset 17). The STFT and iSTFT stay outside, in
:func:`noisy_spectrum` and :func:`spectrum_to_waveform` (plain torch, the
same transforms as the model), so the exported graph has no FFT op.

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import pathlib
import shutil
import tempfile
import warnings

import torch
from hyperpyyaml import load_hyperpyyaml
from torch import nn

from speechbrain.utils.checkpoints import Checkpointer

from cmse_speechbrain.dataio import atomic_output

INFERENCE_YAML = """\
# CMCR-Net inference hyperparameters (cmse_speechbrain.inference.EnhanceCMCR).
# Exported from {run_folder}, checkpoint {checkpoint}.
sample_rate: {sample_rate}
chunk_seconds: {chunk_seconds}  # longer inputs are enhanced in chunks
chunk_overlap_seconds: {overlap_seconds}  # cross-faded overlap of the chunks
min_audio_samples: {n_fft}  # shorter inputs are refused

enhance_model: !new:cmse_speechbrain.cmcr_net.CMCRNet
{model_args}

modules:
    enhance_model: !ref <enhance_model>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        enhance_model: !ref <enhance_model>
"""


def inference_yaml(config, run_folder="", checkpoint="", chunk_seconds=10.0, overlap_seconds=1.0):
    """The inference YAML text for a CMCRNet built with ``config``.

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> text = inference_yaml(CMCRNet(channels=[4, 8, 8, 8, 8]).config)
    >>> hparams = load_hyperpyyaml(text)
    >>> hparams["enhance_model"].config["channels"]
    [4, 8, 8, 8, 8]
    """
    model_args = "\n".join(
        f"    {key}: {json.dumps(value)}" for key, value in config.items()
    )
    return INFERENCE_YAML.format(
        run_folder=run_folder,
        checkpoint=checkpoint,
        sample_rate=config["sample_rate"],
        n_fft=config["n_fft"],
        chunk_seconds=chunk_seconds,
        overlap_seconds=overlap_seconds,
        model_args=model_args,
    )


def export_model(run_folder, destination, max_key="pesq", overwrite=False,
                 chunk_seconds=10.0, overlap_seconds=1.0):
    """Exports the best checkpoint of a training run as a model folder.

    Arguments
    ---------
    run_folder : str or pathlib.Path
        A recipe's output folder (holds ``hyperparams.yaml`` and ``save/``).
    destination : str or pathlib.Path
        The model folder to create.
    max_key : str
        Checkpoint meta key to maximise (validation PESQ by default).
    overwrite : bool
        Replace an existing destination.
    chunk_seconds, overlap_seconds : float
        Chunking of long inputs at inference.

    Returns
    -------
    pathlib.Path
        The destination.
    """
    run_folder, destination = pathlib.Path(run_folder), pathlib.Path(destination)
    if destination.exists() and not overwrite:
        raise FileExistsError(f"{destination}: exists (use overwrite=True / --force)")
    hparams_path = run_folder / "hyperparams.yaml"
    if not hparams_path.is_file():
        raise FileNotFoundError(f"{hparams_path}: not a training output folder")
    checkpoint = Checkpointer(run_folder / "save").find_checkpoint(max_key=max_key)
    if checkpoint is None or "model" not in checkpoint.paramfiles:
        raise FileNotFoundError(f"{run_folder / 'save'}: no checkpoint with a model")
    with open(hparams_path, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin)
    model = hparams["modules"]["model"]
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        shutil.copyfile(checkpoint.paramfiles["model"], staging / "enhance_model.ckpt")
        (staging / "hyperparams.yaml").write_text(
            inference_yaml(model.config, run_folder.resolve(), checkpoint.path.name,
                           chunk_seconds, overlap_seconds),
            encoding="utf-8",
        )
        meta = {k: v for k, v in checkpoint.meta.items() if isinstance(v, (int, float, str))}
        (staging / "checkpoint_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        staging.chmod(0o755)
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


class SpectrumEnhancer(nn.Module):
    """A CMCR-Net's network between its STFT and iSTFT, for export.

    Arguments
    ---------
    model : cmse_speechbrain.cmcr_net.CMCRNet
        The model (used in eval mode).

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2)
    >>> wav = torch.rand(1, 4000) - 0.5
    >>> spec = noisy_spectrum(model, wav)
    >>> spec.shape
    torch.Size([1, 2, 257, 16])
    >>> out = spectrum_to_waveform(model, SpectrumEnhancer(model)(spec), 4000)
    >>> torch.allclose(out, model.eval()(wav)[0], atol=1e-6)
    True
    """

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()
        self.eval()

    def forward(self, spec):
        """Noisy spectrum [B, 2, F, T] -> enhanced spectrum [B, 2, F, T]."""
        return self.model.enhance_spectrum(spec)[0]


def noisy_spectrum(model, wavs):
    """The model's STFT of waveforms [B, samples]: [B, 2, F, T] (real, imag)."""
    return model.stft(wavs).permute(0, 3, 2, 1)


def spectrum_to_waveform(model, spec, length):
    """The model's iSTFT of a spectrum [B, 2, F, T] to ``length`` samples."""
    return model.istft(spec.permute(0, 3, 2, 1), sig_length=length)


def _example_spectrum(model, seconds):
    generator = torch.Generator().manual_seed(0)  # leaves the global RNG alone
    samples = int(seconds * model.config["sample_rate"])
    wav = 0.1 * torch.randn(1, samples, generator=generator)
    return noisy_spectrum(model, wav)


def export_torchscript(model, path, example_seconds=2.0):
    """Writes the network on spectra as TorchScript (``torch.jit.trace``).

    Load it with ``torch.jit.load(path)``; any batch size and length work.
    A causal ``attention_window`` model's attention is traced as one masked
    attention over all frames (memory quadratic in the frames: chunk long
    inputs, as :class:`~cmse_speechbrain.inference.EnhanceCMCR` does).

    Arguments
    ---------
    model : cmse_speechbrain.cmcr_net.CMCRNet
        The model.
    path : str or pathlib.Path
        Output file (``.pt``).
    example_seconds : float
        Length of the tracing example.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = pathlib.Path(path)
    wrapper = SpectrumEnhancer(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in 2.14
        traced = torch.jit.trace(
            wrapper, _example_spectrum(model, example_seconds), check_trace=False
        )
        with atomic_output(path) as partial:
            traced.save(str(partial))
    return path


def export_onnx(model, path, opset=17, example_seconds=2.0):
    """Writes the network on spectra as ONNX (needs the ``onnx`` package).

    Input ``noisy_spectrum`` [batch, 2, F, frames], output
    ``enhanced_spectrum``, batch and frames dynamic (causal windowed models:
    one masked attention, as for :func:`export_torchscript`). Run it with
    onnxruntime; :func:`noisy_spectrum` and :func:`spectrum_to_waveform`
    give the STFT and iSTFT around it.

    Arguments
    ---------
    model : cmse_speechbrain.cmcr_net.CMCRNet
        The model.
    path : str or pathlib.Path
        Output file (``.onnx``).
    opset : int
        ONNX opset (>= 17).
    example_seconds : float
        Length of the tracing example.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    path = pathlib.Path(path)
    wrapper = SpectrumEnhancer(model)
    dynamic = {0: "batch", 3: "frames"}
    with torch.no_grad(), warnings.catch_warnings(), atomic_output(path) as partial:
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (_example_spectrum(model, example_seconds),),
            str(partial),
            opset_version=opset,
            dynamo=False,  # the TorchScript-based exporter works offline
            input_names=["noisy_spectrum"],
            output_names=["enhanced_spectrum"],
            dynamic_axes={"noisy_spectrum": dynamic, "enhanced_spectrum": dynamic},
        )
    return path


def export_network_files(model_folder, torchscript=True, onnx=True):
    """Adds ``enhance_model.pt`` (TorchScript) and/or ``enhance_model.onnx``
    to a ``from_hparams`` model folder, from its own weights.

    Arguments
    ---------
    model_folder : str or pathlib.Path
        A folder written by :func:`export_model` (or the shipped model).
    torchscript, onnx : bool
        Which files to write.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from cmse_speechbrain.inference import EnhanceCMCR

    folder = pathlib.Path(model_folder)
    model = EnhanceCMCR.from_hparams(source=str(folder)).mods.enhance_model
    written = []
    if torchscript:
        written.append(export_torchscript(model, folder / "enhance_model.pt"))
    if onnx:
        written.append(export_onnx(model, folder / "enhance_model.onnx"))
    return written
