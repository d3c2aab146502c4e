"""Moves the end of a stopped run's learning-rate schedule.

    python reports/training/set_schedule_end.py SAVE_FOLDER STEPS

SpeechBrain's ``LinearWarmupScheduler`` restores its length
(``num_training_steps``) from the checkpoint, so a resumed run keeps the
schedule it started with whatever ``number_of_epochs`` says. This rewrites
``lr_annealing.ckpt`` in every checkpoint of ``SAVE_FOLDER`` (atomically) so
that the learning rate decays linearly to 0 at step ``STEPS``; the optimizer,
the objective's state and the data order are kept. Stop the run first; resume
it with ``--number_of_epochs`` = ``STEPS / train_steps_per_epoch``.
"""

import pathlib
import sys

import torch

from cmse_speechbrain.dataio import atomic_output


def main(argv):
    if len(argv) != 2:
        raise SystemExit(__doc__)
    folder, end = pathlib.Path(argv[0]), int(argv[1])
    paths = sorted(folder.glob("CKPT+*/lr_annealing.ckpt"))
    if not paths:
        raise SystemExit(f"{folder}: no checkpoint with an lr_annealing.ckpt")
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    for path, state in zip(paths, states):  # all checked before any is written
        if end <= state["current_step"]:
            raise SystemExit(
                f"{path}: step {state['current_step']} is already past {end}"
            )
    for path, state in zip(paths, states):
        before = state["num_training_steps"]
        state["num_training_steps"] = end
        with atomic_output(path) as partial:
            torch.save(state, partial)
        print(
            f"{path.parent.name}: step {state['current_step']}, schedule end "
            f"{before} -> {end}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
