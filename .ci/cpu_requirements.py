"""Prints name==version for every package of a `pip install --dry-run --report`
except the project itself and the wheels torch does not load on CPU.

torch's Linux wheels link cuDNN, cuBLAS, NCCL, ... so `import torch` needs those
CUDA library wheels even without a GPU; these it only loads on a GPU (or for
torch.compile's GPU code) are left out: about 0.5 GB of downloads, 1.3 GB of disk.
"""

import json
import re
import sys

GPU_ONLY = {
    "triton",
    "cuda-toolkit",
    "cuda-bindings",
    "cuda-pathfinder",
    "nvidia-cusolver",
    "nvidia-cuda-cccl",
    "nvidia-nvtx",
    "nvidia-curand",
}

report = json.load(open(sys.argv[1], encoding="utf-8"))
for item in report["install"]:
    name = re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower()
    if name != "cmse-speechbrain" and name not in GPU_ONLY:
        print(f"{name}=={item['metadata']['version']}")
