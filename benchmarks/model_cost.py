#!/usr/bin/env python3
"""Parameters and multiply-accumulates per second of audio: CMCR-Net's
ablation variants (baseline / +CM / +CR / full) and SpeechBrain's enhancers.

Each variant is built from its YAML with the ablation flags of docs/training.md
(``--use_cm`` / ``--cm_share`` / ``--cr_share``), for the offline default
(``hparams/cmse.yaml``) and the causal streaming model
(``hparams/cmse_causal.yaml``). MACs are counted, not estimated, with
``torch.utils.flop_counter.FlopCounterMode`` (MACs = FLOPs / 2) on 10 s of
real speech; attention and LSTM kernels, which it does not count on CPU, are
counted by their shapes (the attention as computed, masked entries
included). Inference MACs are those of the network's forward pass; the
training-only column counts the forward pass of the extra losses (CM
contrastive loss with its reference features, CR with its representation).
CR shows up there only: it adds no parameter and no inference MAC.

    python benchmarks/model_cost.py

Prints a table, writes ``benchmarks/results/model_cost.csv`` and ``.png``.

Authors
 * cmse-speechbrain contributors 2026
"""

import math
import warnings

import torch
from hyperpyyaml import load_hyperpyyaml
from torch.utils.flop_counter import FlopCounterMode

from common import (
    RESULTS,
    ROOT,
    ablation_study,
    machine,
    pyplot,
    real_speech,
    spectral_mask_model,
    write_csv,
)

warnings.simplefilter("ignore")
aten = torch.ops.aten
SECONDS = 10.0
VARIANTS = {  # the ablation's overrides (benchmarks/hparams/ablation_variants.yaml)
    label: ablation_study()["variants"][name]
    for label, name in [
        ("baseline", "baseline"),
        ("+CM", "cm"),
        ("+CR", "cr"),
        ("full", "full"),
    ]
}


def _attention_flops(query, key, value, *args, out_shape=None, **kwargs):
    *batch, queries, dim = query
    keys, value_dim = key[-2], value[-1]
    return 2 * math.prod(batch) * queries * keys * (dim + value_dim)


def _lstm_flops(inputs, hx, params, *args, out_shape=None, **kwargs):
    # every weight matrix is applied once per frame and direction
    batch_first = args[-1] if args else True
    steps = inputs[1] if batch_first else inputs[0]
    batch = inputs[0] if batch_first else inputs[1]
    return 2 * steps * batch * sum(math.prod(p) for p in params if len(p) == 2)


def _mkldnn_rnn_layer_flops(
    inputs, weight_ih, weight_hh, *args, out_shape=None, **kwargs
):
    steps, batch = inputs[0], inputs[1]  # [T, B, In]: one layer, one direction
    return 2 * steps * batch * (math.prod(weight_ih) + math.prod(weight_hh))


COUNTED = {
    aten.mkldnn_rnn_layer: _mkldnn_rnn_layer_flops,
    aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops,
    aten._scaled_dot_product_attention_math: _attention_flops,
    aten.lstm: _lstm_flops,
}


def macs(function):
    with FlopCounterMode(display=False, custom_mapping=COUNTED) as counter:
        with torch.no_grad():
            function()
    return counter.get_total_flops() / 2


def load(yaml, overrides):
    with open(ROOT / "hparams" / yaml) as fin:
        return load_hyperpyyaml(fin, {"output_folder": "/tmp/cmse_bench", **overrides})


def mask_recipe_macs(net, takes_lengths, audio):
    from speechbrain.processing.features import spectral_magnitude

    from cmse_speechbrain.dsp import stft_pair

    stft, _ = stft_pair(16000, 512, 256)
    feats = torch.log1p(spectral_magnitude(stft(audio), power=0.5))
    if takes_lengths:
        return macs(lambda: net(feats, torch.ones(1)))
    return macs(lambda: net(feats))


def main():
    print(f"machine: {machine()}")
    audio = real_speech(SECONDS)[None]
    clean = audio.clone()
    rows = []
    for yaml in ["cmse.yaml", "cmse_causal.yaml"]:
        for variant, overrides in VARIANTS.items():
            hparams = load(yaml, dict(overrides, init_from=None))
            model = hparams["model"].eval()
            objective = hparams["objective"]
            inference = macs(lambda: model(audio))
            extra = 0.0
            with torch.no_grad():
                enhanced, aux = model(audio)
            if hparams["cr_share"] > 0:
                extra += macs(
                    lambda: objective.contrastive_regularization(enhanced, clean, audio)
                )
            if hparams["cm_share"] > 0 and model.cm is not None:
                extra += macs(
                    lambda: objective.stream_contrast(
                        aux["streams"], clean, audio - clean
                    )
                )
            rows.append(
                {
                    "config": yaml,
                    "variant": variant,
                    "params": sum(p.numel() for p in model.parameters()),
                    "inference_mmac_per_s": inference / SECONDS / 1e6,
                    "training_extra_mmac_per_s": extra / SECONDS / 1e6,
                }
            )
    from speechbrain.lobes.models.MetricGAN import EnhancementGenerator

    for name, net, lengths in [
        ("MetricGAN EnhancementGenerator", EnhancementGenerator().eval(), True),
        ("spectral-mask CNNTransformerSE", spectral_mask_model().eval(), False),
    ]:
        rows.append(
            {
                "config": "SpeechBrain peer",
                "variant": name,
                "params": sum(p.numel() for p in net.parameters()),
                "inference_mmac_per_s": mask_recipe_macs(net, lengths, audio)
                / SECONDS
                / 1e6,
                "training_extra_mmac_per_s": 0.0,
            }
        )
    print(
        f"\n{'config':18s} {'variant':32s} {'params':>9s} "
        f"{'inference MMAC/s':>17s} {'training-only MMAC/s':>21s}"
    )
    for r in rows:
        print(
            f"{r['config']:18s} {r['variant']:32s} {r['params'] / 1e6:8.3f}M "
            f"{r['inference_mmac_per_s']:17.1f} {r['training_extra_mmac_per_s']:21.1f}"
        )
    for yaml in ["cmse.yaml", "cmse_causal.yaml"]:
        by = {r["variant"]: r for r in rows if r["config"] == yaml}
        for plain, with_cr in [("baseline", "+CR"), ("+CM", "full")]:
            same = (
                by[plain]["params"] == by[with_cr]["params"]
                and by[plain]["inference_mmac_per_s"]
                == by[with_cr]["inference_mmac_per_s"]
            )
            added_mmac = (
                by[with_cr]["inference_mmac_per_s"] - by[plain]["inference_mmac_per_s"]
            )
            print(
                f"{yaml}: {with_cr} vs {plain}: CR adds "
                f"{by[with_cr]['params'] - by[plain]['params']} parameters and "
                f"{added_mmac:.1f} "
                f"inference MMAC/s ({'identical' if same else 'DIFFERENT'})"
            )
    print(f"wrote {write_csv('model_cost', rows)}")
    plot(rows)


def plot(rows):
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{r['config']}: {r['variant']}" for r in rows]
    inference = [r["inference_mmac_per_s"] for r in rows]
    extra = [r["training_extra_mmac_per_s"] for r in rows]
    ax.barh(range(len(rows)), inference, label="inference")
    ax.barh(
        range(len(rows)), extra, left=inference, label="training-only (CM/CR losses)"
    )
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xlabel("MMAC per second of audio")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "model_cost.png", dpi=90)
    plt.close(fig)
    print(f"wrote {RESULTS / 'model_cost.png'}")


if __name__ == "__main__":
    main()
