"""Checkpointing helpers: an atomic Checkpointer and a training history.

SpeechBrain's ``Checkpointer`` writes a checkpoint's meta file first and its
parameter files after, in the final folder: a run killed in between leaves a
folder that looks complete and is loaded on the next start.
:class:`AtomicCheckpointer` writes the whole checkpoint into a hidden
staging folder and renames it into place only when every file is written,
so a checkpoint is either absent or whole.

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import logging
import os
import shutil

from speechbrain.utils.checkpoints import (
    Checkpoint,
    Checkpointer,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from cmse_speechbrain.safe_yaml import UNSAFE_LOAD_ERRORS, describe_load_error

STAGING_PREFIX = ".staging-"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded (truncated, corrupt or tampered)."""


logger = logging.getLogger(__name__)


class AtomicCheckpointer(Checkpointer):
    """A ``Checkpointer`` whose checkpoints appear whole or not at all.

    Same arguments as :class:`speechbrain.utils.checkpoints.Checkpointer`.

    Example
    -------
    >>> import torch
    >>> tmp = getfixture("tmp_path")
    >>> model = torch.nn.Linear(2, 2)
    >>> ckpt = AtomicCheckpointer(tmp, recoverables={"model": model})
    >>> saved = ckpt.save_checkpoint(meta={"pesq": 2.0})
    >>> saved.path.name.startswith("CKPT+"), (saved.path / "model.ckpt").exists()
    (True, True)
    >>> [p.name for p in tmp.iterdir() if p.name.startswith(STAGING_PREFIX)]
    []
    """

    _staging_dir = None

    def load_checkpoint(self, checkpoint):
        """Loads a checkpoint; a corrupt or tampered one is refused by name.

        Parameter files are read with ``torch.load(weights_only=True)``
        (PyTorch's default), which refuses any pickled code.
        """
        try:
            super().load_checkpoint(checkpoint)
        except FileNotFoundError:
            raise
        except UNSAFE_LOAD_ERRORS as error:
            raise CheckpointError(
                f"{checkpoint.path}: cannot be loaded safely "
                f"({describe_load_error(error)}). Remove this "
                "folder to resume from an older checkpoint."
            ) from None

    def _new_checkpoint_dirpath(self):
        if self._staging_dir is not None:
            return self._staging_dir
        return super()._new_checkpoint_dirpath()

    def save_checkpoint(
        self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO
    ):
        """Saves a checkpoint into a staging folder, then renames it."""
        final_dir = None
        if if_main_process():
            for leftover in self.checkpoints_dir.glob(STAGING_PREFIX + "*"):
                shutil.rmtree(leftover, ignore_errors=True)
            if name is None:
                final_dir = super()._new_checkpoint_dirpath()
            else:
                final_dir = self._custom_checkpoint_dirpath(name)
            self._staging_dir = final_dir.with_name(STAGING_PREFIX + final_dir.name)
        try:
            saved = super().save_checkpoint(
                meta=meta, end_of_epoch=end_of_epoch, verbosity=logging.DEBUG
            )
        finally:
            self._staging_dir = None
        ddp_barrier()
        if not if_main_process():
            return saved
        if final_dir.exists():  # a custom name saved twice: replace it
            shutil.rmtree(final_dir)
        os.replace(saved.path, final_dir)
        kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
        logger.log(verbosity, f"Saved an {kind} checkpoint in {final_dir}")
        return Checkpoint(
            final_dir,
            saved.meta,
            {key: final_dir / path.name for key, path in saved.paramfiles.items()},
        )


@register_checkpoint_hooks
class TrainingHistory:
    """Per-epoch statistics kept in the checkpoints (plotted by
    :func:`cmse_speechbrain.reporting.plot_training_curves`).

    Example
    -------
    >>> history = TrainingHistory()
    >>> history.append(1, train={"loss": 2.0}, valid={"pesq": 1.5})
    >>> history.rows
    [{'epoch': 1, 'train_loss': 2.0, 'valid_pesq': 1.5}]
    """

    def __init__(self):
        self.rows = []

    def append(self, epoch, train=None, valid=None):
        """Adds (or replaces) the statistics of one epoch."""
        row = {"epoch": epoch}
        for prefix, stats in [("train", train), ("valid", valid)]:
            for key, value in (stats or {}).items():
                row[f"{prefix}_{key}"] = float(value)
        self.rows = [r for r in self.rows if r["epoch"] != epoch] + [row]

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.rows, f)

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        del end_of_epoch
        with open(path, encoding="utf-8") as f:
            self.rows = json.load(f)
