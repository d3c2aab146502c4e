"""Scores a model checkpoint (a CMCRNet state dict of the shipped configuration) on a
recipe's fixed validation set: PESQ, STOI, quality, pause attenuation, speech level,
DNSMOS of the enhanced audio. Prints one JSON line; saves the per-utterance scores.

    python reports/training/score_checkpoint.py CKPT/model.ckpt scores.npy \
        RUN/valid.json ../shared/data [threads]
"""

import json
import pathlib
import sys

import numpy as np
import soundfile as sf
import torch

# the thread count is set before the package is imported
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 1)
from cmse_speechbrain.brain import quality_score  # noqa: E402
from cmse_speechbrain.inference import EnhanceCMCR, shipped_model_folder  # noqa: E402
from cmse_speechbrain.metrics import (  # noqa: E402
    dnsmos_scores,
    pause_attenuation,
    pesq_wb,
    stoi_score,
)

ckpt = sys.argv[1]
# the network as the shipped folder configures it, with the checkpoint's weights
model = EnhanceCMCR.from_hparams(
    source=str(shipped_model_folder())
).mods.enhance_model.eval()
path = pathlib.Path(ckpt)
state = torch.load(
    path / "model.ckpt" if path.is_dir() else path,
    map_location="cpu",
    weights_only=True,
)
model.load_state_dict(state)
valid = json.load(open(sys.argv[3]))
data_root = sys.argv[4]
rows = []
for uid, e in sorted(valid.items()):
    noisy, _ = sf.read(
        e["noisy_wav"].replace("{data_root}", data_root), dtype="float32"
    )
    clean, _ = sf.read(
        e["clean_wav"].replace("{data_root}", data_root), dtype="float32"
    )
    x = torch.from_numpy(noisy)[None]
    c = torch.from_numpy(clean)
    with torch.no_grad():
        y = model(x)[0][0]
    pa = pause_attenuation(y, x[0], c)
    d = dnsmos_scores(y)
    rows.append(
        [
            pesq_wb(y, c),
            stoi_score(y, c),
            pa["pause_attenuation_db"],
            pa["speech_level_db"],
            d["bak"],
            d["ovrl"],
        ]
    )
r = np.array(rows, float)
m = np.nanmean(r, 0)
med = np.nanmedian(r, 0)
out = dict(
    ckpt=ckpt,
    pesq=m[0],
    stoi=m[1],
    quality=quality_score(m[0], m[1]),
    pause_att_median=med[2],
    speech_level_median=med[3],
    dnsmos_bak=m[4],
    dnsmos_ovrl=m[5],
)
print(json.dumps(out))
np.save(sys.argv[2], r)
