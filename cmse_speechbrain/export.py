"""Turns a training run's output folder into a ``from_hparams`` model folder.

``export_model(run_folder, destination)`` takes the best checkpoint (by
validation PESQ) of ``run_folder/save`` and writes ``destination`` with:

* ``hyperparams.yaml``: the inference YAML of :class:`EnhanceCMCR`, with the
  network rebuilt from the run's own ``hyperparams.yaml``;
* ``enhance_model.ckpt``: the network's weights;
* ``checkpoint_meta.json``: the checkpoint's validation scores.

The folder appears whole or not at all (written aside, then renamed).

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import pathlib
import shutil
import tempfile

from hyperpyyaml import load_hyperpyyaml

from speechbrain.utils.checkpoints import Checkpointer

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
