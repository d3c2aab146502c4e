"""Turns a training run's output folder into a ``from_hparams`` model folder.

``export_model(run_folder, destination)`` takes the best checkpoint (by
validation PESQ) of ``run_folder/save`` and writes ``destination`` with:

* ``hyperparams.yaml``: the inference YAML of :class:`EnhanceCMCR`, with the
  network rebuilt from the run's own ``hyperparams.yaml`` and written from
  its record of constructor arguments (:mod:`cmse_speechbrain.init_record`),
  then loaded back and compared (:func:`check_model_folder`);
* ``enhance_model.ckpt``: the network's weights;
* ``checkpoint_meta.json``: the checkpoint's validation scores.

The folder appears whole or not at all (written aside, then renamed). No
file in it names a path of the machine it was made on: the YAML's comment
names the run by its folder's own name, and the TorchScript archive is
written without its debug tables (which hold source file paths).

``export_torchscript(model, path)`` and ``export_onnx(model, path)`` write
the network between STFT and iSTFT (:class:`SpectrumEnhancer`: noisy
spectrum [B, 2, F, T] in, enhanced spectrum out, batch and frames dynamic)
as TorchScript or ONNX (opset 17). The STFT and iSTFT stay outside, in
:func:`noisy_spectrum` and :func:`spectrum_to_waveform` (plain torch, the
same transforms as the model), so the exported graph has no FFT op.

:func:`load_network` loads such a file for the package, by what each
format can do:

* ONNX is data: a graph of operators that ONNX Runtime executes, none of
  which reads files, opens connections or starts processes. What ONNX
  cannot check is refused before a session is made: operators outside the
  standard domain (custom operators are native code that a runtime would
  have to load), model-local functions, and tensors kept in external data
  files (a path that could point anywhere).
* TorchScript is a program: its code runs when it is loaded and called
  and may call any registered operator (reading files, for one). It
  cannot be checked, so it is refused unless ``trust_code=True``.

The export itself reads the run's training YAML with HyperPyYAML, which
runs whatever that YAML names: export only runs you trust (your own).

Authors
 * cmse-speechbrain contributors 2026
"""

import io
import json
import pathlib
import shutil
import tempfile
import warnings
import zipfile

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.checkpoints import Checkpointer
from torch import nn

from cmse_speechbrain.dataio import atomic_output
from cmse_speechbrain.init_record import init_yaml

INFERENCE_YAML = """\
# CMCR-Net inference hyperparameters (cmse_speechbrain.inference.EnhanceCMCR).
{origin}sample_rate: {sample_rate}
chunk_seconds: {chunk_seconds}  # longer inputs are enhanced in chunks
chunk_overlap_seconds: {overlap_seconds}  # cross-faded overlap of the chunks
min_audio_samples: {n_fft}  # shorter inputs are refused

enhance_model: {enhance_model}

modules:
    enhance_model: !ref <enhance_model>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        enhance_model: !ref <enhance_model>
"""


def inference_yaml(
    model, run_name="", checkpoint="", chunk_seconds=10.0, overlap_seconds=1.0
):
    """The inference YAML text of a network, written from its own record.

    The network is written as its class and the arguments it was built
    with (``model.config``, see :mod:`cmse_speechbrain.init_record`), every
    argument by name, so that the YAML rebuilds the same network whatever
    the class's defaults become. Only classes that
    :mod:`cmse_speechbrain.safe_yaml` allows load back.

    Arguments
    ---------
    model : cmse_speechbrain.cmcr_net.CMCRNet
        The network.
    run_name : str
        The training run's own name, for the comment (never a path).
    checkpoint : str
        The checkpoint's name, for the comment.
    chunk_seconds, overlap_seconds : float
        Chunking of long inputs at inference.

    Returns
    -------
    str

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8])
    >>> text = inference_yaml(model, "0", "CKPT+1")
    >>> text.splitlines()[1]
    '# Exported from training run "0", checkpoint CKPT+1.'
    >>> load_hyperpyyaml(text)["enhance_model"].config == model.config
    True
    """
    origin = ""
    if run_name or checkpoint:
        origin = (
            f'# Exported from training run "{run_name}", checkpoint {checkpoint}.\n'
        )
    return INFERENCE_YAML.format(
        origin=origin,
        sample_rate=model.config["sample_rate"],
        n_fft=model.config["n_fft"],
        chunk_seconds=chunk_seconds,
        overlap_seconds=overlap_seconds,
        enhance_model=init_yaml(model),
    )


def check_model_folder(folder, model, model_key="enhance_model"):
    """Checks that a model folder's ``hyperparams.yaml`` rebuilds ``model``.

    The YAML is loaded as a user would load it (without running code from
    it, :func:`cmse_speechbrain.safe_yaml.load_hyperparams`); the rebuilt
    network must be of the same class, with the same recorded constructor
    arguments and the same parameter names and shapes.

    Arguments
    ---------
    folder : str or pathlib.Path
        The model folder.
    model : torch.nn.Module
        The network the folder was written from.
    model_key : str
        The YAML key of the network.

    Raises
    ------
    ValueError
        Naming the file and the first difference.

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> folder = getfixture("tmp_path")
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2)
    >>> _ = (folder / "hyperparams.yaml").write_text(inference_yaml(model))
    >>> check_model_folder(folder, model)
    >>> check_model_folder(folder, CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16))
    Traceback (most recent call last):
    ...
    ValueError: .../hyperparams.yaml: rebuilds CMCRNet with nhead=2, the network
    has nhead=4
    """
    from cmse_speechbrain.safe_yaml import load_hyperparams

    path = pathlib.Path(folder) / "hyperparams.yaml"
    rebuilt = load_hyperparams(path)[model_key]
    name = type(model).__name__
    if type(rebuilt) is not type(model):
        raise ValueError(
            f"{path}: rebuilds a {type(rebuilt).__name__}, the network is a {name}"
        )
    for key in dict(model.config, **rebuilt.config):
        mine, theirs = (
            model.config.get(key, "(missing)"),
            rebuilt.config.get(key, "(missing)"),
        )
        if mine != theirs:
            raise ValueError(
                f"{path}: rebuilds {name} with {key}={theirs!r}, "
                f"the network has {key}={mine!r}"
            )
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    rebuilt_shapes = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if shapes != rebuilt_shapes:
        raise ValueError(
            f"{path}: rebuilds {name} with other parameters than the network's"
        )


def export_model(
    run_folder,
    destination,
    max_key="quality",
    overwrite=False,
    chunk_seconds=10.0,
    overlap_seconds=1.0,
):
    """Exports the best checkpoint of a training run as a model folder.

    Arguments
    ---------
    run_folder : str or pathlib.Path
        A recipe's output folder (holds ``hyperparams.yaml`` and ``save/``).
    destination : str or pathlib.Path
        The model folder to create.
    max_key : str
        Checkpoint meta key to maximise: validation ``quality`` (PESQ and
        STOI, see :func:`cmse_speechbrain.brain.quality_score`) by default;
        runs whose checkpoints lack it fall back to ``pesq``.
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
    checkpointer = Checkpointer(run_folder / "save")
    checkpoint = checkpointer.find_checkpoint(max_key=max_key)
    if checkpoint is None and max_key == "quality":  # a run from before "quality"
        checkpoint = checkpointer.find_checkpoint(max_key="pesq")
    if checkpoint is None or "model" not in checkpoint.paramfiles:
        raise FileNotFoundError(f"{run_folder / 'save'}: no checkpoint with a model")
    with open(hparams_path, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin)
    model = hparams["modules"]["model"]
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(
        tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent)
    )
    try:
        shutil.copyfile(checkpoint.paramfiles["model"], staging / "enhance_model.ckpt")
        (staging / "hyperparams.yaml").write_text(
            inference_yaml(
                model,
                run_folder.resolve().name,
                checkpoint.path.name,
                chunk_seconds,
                overlap_seconds,
            ),
            encoding="utf-8",
        )
        check_model_folder(staging, model)
        meta = {
            k: v for k, v in checkpoint.meta.items() if isinstance(v, (int, float, str))
        }
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
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    with atomic_output(path) as partial:
        _write_without_debug_tables(buffer.getvalue(), partial, path.stem)
    return path


def _write_without_debug_tables(archive, path, root):
    """Rewrites a TorchScript archive without its ``.debug_pkl`` tables
    (source file paths of the machine it was traced on), under the folder
    name ``root``; TorchScript loads it the same."""
    with (
        zipfile.ZipFile(io.BytesIO(archive)) as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target,
    ):
        for info in source.infolist():
            if info.filename.endswith(".debug_pkl"):
                continue
            name = root + "/" + info.filename.split("/", 1)[1]
            target.writestr(name, source.read(info.filename))


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
    # traced on the CPU, whatever device SpeechBrain would pick
    model = EnhanceCMCR.from_hparams(
        source=str(folder), run_opts={"device": "cpu"}
    ).mods.enhance_model
    written = []
    if torchscript:
        written.append(export_torchscript(model, folder / "enhance_model.pt"))
    if onnx:
        written.append(export_onnx(model, folder / "enhance_model.onnx"))
    return written


ONNX_DOMAINS = ("", "ai.onnx")


def check_onnx(model, path="<onnx>"):
    """Refuses what an ONNX model could do that cannot be checked.

    Arguments
    ---------
    model : onnx.ModelProto
        The model, loaded without its external data.
    path : str or pathlib.Path
        Its file, for messages.

    Raises
    ------
    UnsafeModelError
        An operator outside the standard domain, a model-local function,
        or a tensor stored in an external file; named.
    """
    import onnx

    from cmse_speechbrain.safe_yaml import UnsafeModelError

    if model.functions:
        raise UnsafeModelError(
            path, None, f"defines functions ({model.functions[0].name}): not allowed"
        )
    for opset in model.opset_import:
        if opset.domain not in ONNX_DOMAINS:
            raise UnsafeModelError(
                path, None, f"imports the operator domain {opset.domain!r}: not allowed"
            )
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        tensors = list(graph.initializer) + [s.values for s in graph.sparse_initializer]
        for node in graph.node:
            if node.domain not in ONNX_DOMAINS:
                raise UnsafeModelError(
                    path,
                    None,
                    f"node {node.name!r} uses the custom "
                    f"operator {node.domain}.{node.op_type}",
                )
            for attribute in node.attribute:
                graphs.extend(
                    list(attribute.graphs)
                    + ([attribute.g] if attribute.HasField("g") else [])
                )
                tensors.extend(
                    list(attribute.tensors)
                    + ([attribute.t] if attribute.HasField("t") else [])
                )
        for tensor in tensors:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                raise UnsafeModelError(
                    path, None, f"tensor {tensor.name!r} is stored in an external file"
                )
    onnx.checker.check_model(model)


class OnnxNetwork:
    """An exported ONNX network run by ONNX Runtime: spectrum in, spectrum
    out (torch tensors), like :class:`SpectrumEnhancer`.

    Arguments
    ---------
    session : onnxruntime.InferenceSession
        The session.
    """

    def __init__(self, session):
        self.session = session

    def __call__(self, spec):
        """Noisy spectrum [B, 2, F, T] -> enhanced spectrum [B, 2, F, T]."""
        (enhanced,) = self.session.run(
            None, {"noisy_spectrum": spec.detach().cpu().numpy()}
        )
        return torch.from_numpy(enhanced)


def load_network(path, trust_code=False):
    """Loads a network file written by :func:`export_network_files`.

    Arguments
    ---------
    path : str or pathlib.Path
        ``.onnx`` (checked with :func:`check_onnx`, run by ONNX Runtime on
        the CPU) or ``.pt`` (TorchScript, refused unless ``trust_code``).
    trust_code : bool
        Load TorchScript, which may run any code (a warning says so).

    Returns
    -------
    callable
        Spectrum [B, 2, F, T] -> enhanced spectrum (see :func:`noisy_spectrum`
        and :func:`spectrum_to_waveform`).

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> model = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2).eval()
    >>> path = export_torchscript(
    ...     model, getfixture("tmp_path") / "net.pt", example_seconds=0.5
    ... )
    >>> load_network(path)
    Traceback (most recent call last):
     ...
    cmse_speechbrain.safe_yaml.UnsafeModelError: .../net.pt: TorchScript is a
    program ...
    """
    from cmse_speechbrain.safe_yaml import UnsafeModelError

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such network file")
    if path.suffix == ".onnx":
        import onnx
        import onnxruntime

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # protobuf raises several types
            raise ValueError(f"{path}: not an ONNX model ({error})") from None
        check_onnx(model, path)
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return OnnxNetwork(session)
    if path.suffix == ".pt":
        if not trust_code:
            raise UnsafeModelError(
                path,
                None,
                "TorchScript is a program (its code runs when loaded and may call "
                "any operator, reading files included) and cannot be checked; load "
                "the .onnx file, or use trust_code=True only if you trust its author",
            )
        warnings.warn(
            f"{path}: TorchScript loaded with trust_code=True: it may run any code",
            stacklevel=2,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    raise ValueError(f"{path}: not a network file this package writes (.onnx or .pt)")
