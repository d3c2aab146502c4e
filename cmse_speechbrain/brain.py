"""CMSEBrain: training and evaluation of CMCR-Net, shared by every recipe.

The objective is::

    loss = recon_weight * recon_loss(enhanced, clean)
         + cm_weight * cm_loss(CM streams, clean reference)   (if the CM is on)
         + cr_weight * cr_loss(enhanced, clean, noisy)          (if cr_weight > 0)

Hyperparameters it reads (all from the recipe's YAML): ``recon_loss``,
``recon_weight``, ``cm_loss``, ``cm_weight``, ``cr_loss``, ``cr_weight``,
``sample_rate``, ``train_logger``, ``history``, ``output_folder``,
``enhanced_folder`` (test outputs; ``null`` to skip writing them),
``epoch_counter``, ``pesq_n_jobs``.

Validation and test report PESQ (wide-band) and STOI of the enhanced and of
the noisy input; the checkpoint with the best validation PESQ is kept. The test stage also scores the noisy input,
writes ``test_results.csv`` (per utterance) and ``test_summary.json``.

Authors
 * cmse-speechbrain contributors 2026
"""

import json
import logging
import pathlib

import torch

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.metric_stats import MetricStats

from cmse_speechbrain.dataio import atomic_output, write_audio_atomic
from cmse_speechbrain.metrics import nanmean, pesq_wb, stoi_score

logger = logging.getLogger(__name__)


class CMSEBrain(sb.Brain):
    """Brain for CMCR-Net (and its ablations) on paired noisy/clean data.

    Batches carry ``noisy_sig`` and ``clean_sig`` (SpeechBrain PaddedData).
    ``modules.model`` is a :class:`cmse_speechbrain.cmcr_net.CMCRNet` (or any
    module with the same contract: waveform in, ``(waveform, aux)`` out, and
    ``reference_features`` when the CM loss is used).
    """

    def _model(self):
        model = self.modules.model
        return getattr(model, "module", model)  # unwrap DDP

    def _losses_to_device(self):
        # Losses with frozen networks (the CR representation) live in
        # hparams, not in modules: move them to the Brain's device.
        for name in ["recon_loss", "cm_loss", "cr_loss"]:
            loss = getattr(self.hparams, name, None)
            if isinstance(loss, torch.nn.Module):
                loss.to(self.device)

    def on_fit_start(self):
        """Moves the losses to the device, then SpeechBrain's fit start."""
        self._losses_to_device()
        super().on_fit_start()

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Moves the losses to the device, then loads the best checkpoint."""
        self._losses_to_device()
        super().on_evaluate_start(max_key=max_key, min_key=min_key)

    def _wrap_distributed(self):
        # SpeechBrain converts BatchNorm to SyncBatchNorm under DDP, which
        # only runs on GPUs: on CPU (gloo) keep plain BatchNorm, whose
        # statistics are then per process.
        if not (self.distributed_launch and str(self.device).startswith("cpu")):
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = torch.nn.parallel.DistributedDataParallel(
                    module, find_unused_parameters=self.find_unused_parameters
                )

    def compute_forward(self, batch, stage):
        """Enhances the noisy batch: returns (enhanced [B, T], aux dict)."""
        batch = batch.to(self.device)
        noisy, lengths = batch.noisy_sig
        return self.modules.model(noisy, lengths)

    def compute_objectives(self, predictions, batch, stage):
        """Weighted sum of reconstruction, CM contrastive and CR losses."""
        enhanced, aux = predictions
        clean, lengths = batch.clean_sig
        noisy, _ = batch.noisy_sig
        terms = {
            "recon": self.hparams.recon_loss(enhanced, clean, lengths),
        }
        loss = self.hparams.recon_weight * terms["recon"]
        if self.hparams.cm_weight > 0 and aux["streams"]:
            reference = self._model().reference_features(clean)
            terms["cm"] = self.hparams.cm_loss(aux["streams"], reference, lengths)
            loss = loss + self.hparams.cm_weight * terms["cm"]
        if self.hparams.cr_weight > 0:
            terms["cr"] = self.hparams.cr_loss(enhanced, clean, noisy, lengths)
            loss = loss + self.hparams.cr_weight * terms["cr"]
        for name, value in terms.items():
            total, count = self.loss_terms.get(name, (0.0, 0))
            self.loss_terms[name] = (total + value.detach().item(), count + 1)

        if stage != sb.Stage.TRAIN:
            enhanced = enhanced.detach().float()
            for metric, signal in [
                (self.pesq_metric, enhanced),
                (self.stoi_metric, enhanced),
                (self.noisy_pesq_metric, noisy),
                (self.noisy_stoi_metric, noisy),
            ]:
                metric.append(
                    batch.id, predict=signal, target=clean, lengths=lengths
                )
            if stage == sb.Stage.TEST and self.hparams.enhanced_folder:
                self._write_enhanced(batch.id, enhanced, lengths)
        return loss

    def _write_enhanced(self, ids, enhanced, lengths):
        samples = (lengths * enhanced.shape[1]).round().int()
        for utt_id, wav, length in zip(ids, enhanced, samples):
            write_audio_atomic(
                pathlib.Path(self.hparams.enhanced_folder) / f"{utt_id}.wav",
                wav[:length],
                self.hparams.sample_rate,
                scale_to_fit=True,
            )

    def on_stage_start(self, stage, epoch=None):
        """Resets the loss terms and, outside training, the metrics."""
        self.loss_terms = {}
        if stage == sb.Stage.TRAIN:
            return
        rate = self.hparams.sample_rate
        n_jobs = getattr(self.hparams, "pesq_n_jobs", 1)

        def pesq_metric(predict, target):
            return pesq_wb(predict, target, rate)

        def stoi_metric(predict, target):
            return stoi_score(predict, target, rate)

        # the noisy input's scores are the reference the enhancement must beat
        for name, metric in [("pesq", pesq_metric), ("stoi", stoi_metric)]:
            for prefix in ["", "noisy_"]:
                setattr(
                    self,
                    f"{prefix}{name}_metric",
                    MetricStats(metric, n_jobs=n_jobs, batch_eval=False),
                )

    def _stage_stats(self, stage_loss):
        stats = {"loss": stage_loss}
        for name, (total, count) in self.loss_terms.items():
            stats[name] = total / max(count, 1)
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, keeps the best checkpoint by valid PESQ, writes test results."""
        stats = self._stage_stats(stage_loss)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        for name in ["pesq", "stoi", "noisy_pesq", "noisy_stoi"]:
            stats[name] = nanmean(getattr(self, f"{name}_metric").scores)
        if stage == sb.Stage.VALID:
            epoch_stats = {"epoch": epoch}
            if hasattr(self, "optimizer"):
                epoch_stats["lr"] = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                epoch_stats,
                train_stats=getattr(self, "train_stats", None),
                valid_stats=stats,
            )
            history = getattr(self.hparams, "history", None)
            if history is not None:
                history.append(epoch, getattr(self, "train_stats", None), stats)
                if if_main_process():
                    history.plot(
                        pathlib.Path(self.hparams.output_folder)
                        / "training_curves.png"
                    )
            self.checkpointer.save_and_keep_only(
                meta={"pesq": stats["pesq"], "stoi": stats["stoi"]},
                max_keys=["pesq"],
            )
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
            if if_main_process():
                self._write_test_results(stats)
            self.test_stats = stats

    def _write_test_results(self, stats):
        folder = pathlib.Path(self.hparams.output_folder)
        rows = zip(
            self.pesq_metric.ids,
            self.noisy_pesq_metric.scores,
            self.pesq_metric.scores,
            self.noisy_stoi_metric.scores,
            self.stoi_metric.scores,
        )
        header = ["id", "noisy_pesq", "enhanced_pesq", "noisy_stoi", "enhanced_stoi"]
        lines = [",".join(header)]
        for utt_id, *scores in rows:
            lines.append(",".join([utt_id] + [f"{float(s):.4f}" for s in scores]))
        with atomic_output(folder / "test_results.csv") as partial:
            partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
        summary = {
            "utterances": len(self.pesq_metric.ids),
            "noisy": {"pesq": stats["noisy_pesq"], "stoi": stats["noisy_stoi"]},
            "enhanced": {"pesq": stats["pesq"], "stoi": stats["stoi"]},
            "checkpoint_epoch": self.hparams.epoch_counter.current,
        }
        with atomic_output(folder / "test_summary.json") as partial:
            partial.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        table = (
            f"Test set ({summary['utterances']} utterances)\n"
            f"{'':10s}{'PESQ-WB':>9s}{'STOI':>8s}\n"
            f"{'noisy':10s}{stats['noisy_pesq']:9.3f}{stats['noisy_stoi']:8.3f}\n"
            f"{'enhanced':10s}{stats['pesq']:9.3f}{stats['stoi']:8.3f}"
        )
        logger.info("\n" + table)
