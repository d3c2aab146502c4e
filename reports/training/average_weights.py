"""Averages model weights (state dicts of the same network) into one checkpoint,
with SpeechBrain's ``average_state_dicts``; refuses a non-finite result.

    python reports/training/average_weights.py OUT.ckpt A.ckpt B.ckpt [...]

Each input is a ``model.ckpt`` state dict (or a checkpoint folder holding one),
e.g. the end-of-epoch copies in ``~/runs/over1_epochs/``.
"""

import pathlib
import sys

import torch
from speechbrain.utils.checkpoints import average_state_dicts

from cmse_speechbrain.dataio import atomic_output


def load(path):
    path = pathlib.Path(path)
    path = path / "model.ckpt" if path.is_dir() else path
    return torch.load(path, map_location="cpu", weights_only=True)


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    output, inputs = pathlib.Path(argv[0]), argv[1:]
    reference = load(inputs[0])
    states = [load(p) for p in inputs]
    for path, state in zip(inputs, states):
        if state.keys() != reference.keys():
            raise SystemExit(f"{path}: not the same network as {inputs[0]}")
    average = average_state_dicts(states)
    # integer buffers keep the type of the first input
    average = {k: v.to(reference[k].dtype) for k, v in average.items()}
    bad = [
        k
        for k, v in average.items()
        if v.is_floating_point() and not v.isfinite().all()
    ]
    if bad:
        raise SystemExit(f"non-finite average in {bad[:3]}: nothing written")
    with atomic_output(output) as partial:
        torch.save(average, partial)
    print(f"wrote {output}: the mean of {len(inputs)} checkpoints")


if __name__ == "__main__":
    main(sys.argv[1:])
