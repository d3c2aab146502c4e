"""CMSEBrain: training and evaluation of CMCR-Net, shared by every recipe.

The objective is the module ``modules.objective``
(:class:`cmse_speechbrain.losses.CMCRObjective`): it returns the loss and
its named terms; every ``rebalance_interval`` steps the Brain lets it
measure the gradient share of each term on the model's parameters. The
terms and the measured shares are logged per epoch.

Hyperparameters it reads (all from the recipe's YAML): ``modules.model``,
``modules.objective``, ``sample_rate``, ``train_logger``, ``history``,
``output_folder``, ``enhanced_folder`` (test outputs; ``null`` to skip
writing them), ``epoch_counter``, ``pesq_n_jobs``; optional ``mixer``
(on-the-fly mixing of training batches), ``lr_annealing`` (a per-step
scheduler such as SpeechBrain's ``LinearWarmupScheduler``) and
``train_time_budget_minutes`` (after the first validation the number of
epochs and the schedule are cut to what fits in that time).

Validation and test report PESQ (wide-band) and STOI of the enhanced and of
the noisy input, and ``quality = 0.5 * (PESQ - 1) / 3.5 + 0.5 * STOI`` (each
on a 0..1 scale, equal weights; this project's choice); the checkpoint with
the best validation ``quality`` is kept. They also report the residual noise
of the enhanced speech (:func:`cmse_speechbrain.metrics.pause_attenuation`):
``pause_att``, the noise attenuation in the speech pauses, and
``speech_level``, the change of the speech level, both in dB (means over the
utterances that have pauses / speech; not part of ``quality``).
:meth:`CMSEBrain.test` tests it on one test set and returns the scores; the
noisy input is scored too.
Recordings without a clean reference are scored with DNSMOS
(:meth:`CMSEBrain.evaluate_without_reference`). The reports (test and DNSMOS
tables, training curves) are written by :mod:`cmse_speechbrain.reporting`.

Authors
 * cmse-speechbrain contributors 2026
"""

import logging
import math
import pathlib
import time

import speechbrain as sb
import torch
from speechbrain.utils.distributed import ddp_barrier, if_main_process
from speechbrain.utils.metric_stats import MetricStats

from cmse_speechbrain import reporting
from cmse_speechbrain.dataio import write_audio_atomic
from cmse_speechbrain.metrics import nanmean, pause_attenuation, pesq_wb, stoi_score

logger = logging.getLogger(__name__)


def quality_score(pesq, stoi):
    """The checkpoint selection score: PESQ-WB and STOI on 0..1, averaged.

    Example
    -------
    >>> quality_score(4.5, 1.0), round(quality_score(2.25, 0.9), 3)
    (1.0, 0.629)
    """
    return 0.5 * (pesq - 1.0) / 3.5 + 0.5 * stoi


class CMSEBrain(sb.Brain):
    """Brain for CMCR-Net (and its ablations) on paired noisy/clean data.

    Batches carry ``noisy_sig`` and ``clean_sig`` (SpeechBrain PaddedData).
    ``modules.model`` is a :class:`cmse_speechbrain.cmcr_net.CMCRNet` (or any
    module with the same contract: waveform in, ``(waveform, aux)`` out with
    ``aux["streams"]``), ``modules.objective`` a
    :class:`cmse_speechbrain.losses.CMCRObjective`.
    """

    def _model(self):
        model = self.modules.model
        return getattr(model, "module", model)  # unwrap DDP

    def _objective(self):
        objective = self.modules.objective
        return getattr(objective, "module", objective)

    def on_fit_start(self):
        """A per-process seed, SpeechBrain's fit start, and the schedule's length.

        Under DDP every process was seeded alike; each then continues from
        ``seed + rank``, so that on-the-fly mixing draws different noises
        and SNRs in each process.
        """
        if self.distributed_launch and torch.distributed.is_initialized():
            torch.manual_seed(torch.initial_seed() + torch.distributed.get_rank())
        super().on_fit_start()  # recovers the last checkpoint, if any
        # the schedule decays over the configured epochs, also when a resumed
        # run was given another number_of_epochs
        annealing = getattr(self.hparams, "lr_annealing", None)
        steps_per_epoch = getattr(self.hparams, "train_steps_per_epoch", None)
        if steps_per_epoch and hasattr(annealing, "num_training_steps"):
            annealing.num_training_steps = (
                self.hparams.epoch_counter.limit * steps_per_epoch
            )
        self.fit_started = time.time()

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
        """Enhances the noisy batch: returns (enhanced [B, T], aux dict).

        With a ``mixer`` in the hparams (e.g.
        :class:`cmse_speechbrain.mixing.OnTheFlyMixer`), training batches
        carry clean speech only and the noisy input and its target are mixed
        here; ``aux`` carries the ``noisy`` input and the ``clean`` target
        used, whichever way they came.
        """
        batch = batch.to(self.device)
        mixer = getattr(self.hparams, "mixer", None)
        if stage == sb.Stage.TRAIN and mixer is not None:
            clean, lengths = batch.clean_sig
            noisy, clean = mixer(clean, lengths)
        else:
            noisy, lengths = batch.noisy_sig
            clean, _ = batch.clean_sig
        enhanced, aux = self.modules.model(noisy, lengths)
        return enhanced, dict(aux, noisy=noisy, clean=clean, lengths=lengths)

    def compute_objectives(self, predictions, batch, stage):
        """The objective's loss; logs its terms and, when it asks, lets it
        measure the terms' gradient shares."""
        enhanced, aux = predictions
        clean, noisy, lengths = aux["clean"], aux["noisy"], aux["lengths"]
        loss, terms = self.modules.objective(
            enhanced, clean, noisy, lengths, aux["streams"]
        )
        values = {name: value.detach().item() for name, value in terms.items()}
        if stage == sb.Stage.TRAIN and self._objective().needs_rebalance():
            shares = self._objective().rebalance(terms, self._model().parameters())
            values.update({f"share_{name}": share for name, share in shares.items()})
        for name, value in values.items():
            total, count = self.loss_terms.get(name, (0.0, 0))
            self.loss_terms[name] = (total + value, count + 1)

        if stage != sb.Stage.TRAIN:
            # the metrics run on the CPU (in worker processes with pesq_n_jobs)
            enhanced, noisy, clean, lengths = (
                x.detach().float().cpu() for x in (enhanced, noisy, clean, lengths)
            )
            pairs = [(self.pesq_metric, enhanced), (self.stoi_metric, enhanced)]
            cache = self.noisy_scores.setdefault(stage, {})
            if stage == sb.Stage.VALID and all(i in cache for i in batch.id):
                # the fixed validation set's noisy scores, from the first epoch
                for name in ["pesq", "stoi"]:
                    metric = getattr(self, f"noisy_{name}_metric")
                    metric.ids.extend(batch.id)
                    metric.scores.extend(cache[i][name] for i in batch.id)
            else:
                pairs += [
                    (self.noisy_pesq_metric, noisy),
                    (self.noisy_stoi_metric, noisy),
                ]
            for metric, signal in pairs:
                metric.append(batch.id, predict=signal, target=clean, lengths=lengths)
            # the residual-noise metrics need the noisy input beside the clean
            # reference: both travel as the target's last dimension
            references = torch.stack([noisy, clean], dim=-1)
            for metric in (self.pause_att_metric, self.speech_level_metric):
                metric.append(
                    batch.id, predict=enhanced, target=references, lengths=lengths
                )
            if stage == sb.Stage.TEST and self.hparams.enhanced_folder:
                self._write_enhanced(batch.id, enhanced, lengths)
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Steps the per-step learning-rate schedule, if any."""
        annealing = getattr(self.hparams, "lr_annealing", None)
        if should_step and annealing is not None:
            annealing(self.optimizer)

    def _fit_time_budget(self, epoch):
        # After the first validation: cut the epochs (and the schedule's
        # length) to what fits in the budget at the speed measured so far.
        budget = getattr(self.hparams, "train_time_budget_minutes", None)
        if not budget or epoch != 1:
            return
        counter = self.hparams.epoch_counter
        elapsed = time.time() - self.fit_started
        fit = max(1, math.floor(60.0 * budget / elapsed))
        if fit < counter.limit:
            logger.info(
                "Time budget %.1f min: epoch 1 took %.0f s, training for %d epochs "
                "instead of %d",
                budget,
                elapsed,
                fit,
                counter.limit,
            )
            annealing = getattr(self.hparams, "lr_annealing", None)
            if annealing is not None and hasattr(annealing, "num_training_steps"):
                steps_per_epoch = annealing.current_step
                annealing.num_training_steps = fit * steps_per_epoch
            counter.limit = fit

    _test_set_name = None  # the name given to test(), while it runs

    def test(self, test_set, name=None, max_key="quality", test_loader_kwargs=None):
        """Tests the best checkpoint on one test set; returns its scores.

        Writes ``test_results[_<name>].csv`` and ``test_summary[_<name>].json``
        (:func:`cmse_speechbrain.reporting.write_test_report`) and the
        enhanced utterances to ``enhanced_folder[/<name>]``.

        Arguments
        ---------
        test_set : Dataset or DataLoader
            Paired ``noisy_sig`` and ``clean_sig``.
        name : str, optional
            The set's name, in its outputs' names; None for a recipe's only
            test set.
        max_key : str
            The checkpoint to load: the best by this validation score.
        test_loader_kwargs : dict, optional
            As in ``evaluate``.

        Returns
        -------
        dict
            Mean ``pesq``, ``stoi``, ``noisy_pesq``, ``noisy_stoi``,
            ``pause_att``, ``speech_level`` (dB), ``quality``, ``loss`` and
            the objective's terms.
        """
        self._test_set_name = name
        try:
            self.evaluate(
                test_set, max_key=max_key, test_loader_kwargs=test_loader_kwargs or {}
            )
        finally:
            self._test_set_name = None
        return self.test_stats

    def _write_enhanced(self, ids, enhanced, lengths):
        folder = pathlib.Path(self.hparams.enhanced_folder)
        if self._test_set_name:
            folder = folder / self._test_set_name
        samples = (lengths * enhanced.shape[1]).round().int()
        for utt_id, wav, length in zip(ids, enhanced, samples):
            write_audio_atomic(
                folder / f"{utt_id}.wav",
                wav[:length],
                self.hparams.sample_rate,
                scale_to_fit=True,
            )

    def on_stage_start(self, stage, epoch=None):
        """Resets the loss terms and, outside training, the metrics."""
        self.loss_terms = {}
        if not hasattr(self, "noisy_scores"):
            self.noisy_scores = {}
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

        def residual_noise_metric(key):
            def metric(predict, target):  # target: [samples, 2], noisy and clean
                return pause_attenuation(predict, target[:, 0], target[:, 1], rate)[key]

            return metric

        # numpy on frames, cheap: in this process
        for name, key in [
            ("pause_att", "pause_attenuation_db"),
            ("speech_level", "speech_level_db"),
        ]:
            setattr(
                self,
                f"{name}_metric",
                MetricStats(residual_noise_metric(key), batch_eval=False),
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
        for name in [
            "pesq",
            "stoi",
            "noisy_pesq",
            "noisy_stoi",
            "pause_att",
            "speech_level",
        ]:
            stats[name] = nanmean(getattr(self, f"{name}_metric").scores)
        if stage == sb.Stage.VALID:
            cache = self.noisy_scores.setdefault(stage, {})
            for utt_id, pesq, stoi in zip(
                self.noisy_pesq_metric.ids,
                self.noisy_pesq_metric.scores,
                self.noisy_stoi_metric.scores,
            ):
                cache[utt_id] = {"pesq": pesq, "stoi": stoi}
        stats["quality"] = quality_score(stats["pesq"], stats["stoi"])
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
                    reporting.plot_training_curves(
                        history.rows,
                        pathlib.Path(self.hparams.output_folder)
                        / "training_curves.png",
                    )
            self.checkpointer.save_and_keep_only(
                meta={
                    "pesq": stats["pesq"],
                    "stoi": stats["stoi"],
                    "quality": stats["quality"],
                },
                max_keys=["quality"],
            )
            self._fit_time_budget(epoch)
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
            if if_main_process():
                reporting.write_test_report(
                    self.hparams.output_folder,
                    self.pesq_metric.ids,
                    {
                        "noisy_pesq": self.noisy_pesq_metric.scores,
                        "enhanced_pesq": self.pesq_metric.scores,
                        "noisy_stoi": self.noisy_stoi_metric.scores,
                        "enhanced_stoi": self.stoi_metric.scores,
                        "enhanced_pause_attenuation_db": self.pause_att_metric.scores,
                        "enhanced_speech_level_db": self.speech_level_metric.scores,
                    },
                    stats,
                    self.hparams.epoch_counter.current,
                    self._test_set_name,
                )
            self.test_stats = stats

    def evaluate_without_reference(
        self, dataset, name="real", max_key="quality", min_key=None
    ):
        """Enhances recordings that have no clean reference; scores DNSMOS.

        Loads the best checkpoint, enhances every recording whole
        (:meth:`enhance_recording`) and scores DNSMOS P.835 SIG, BAK and
        OVRL of the noisy and of the enhanced signal
        (:func:`cmse_speechbrain.reporting.score_without_reference`). Writes
        ``dnsmos_<name>.csv`` (per recording), ``dnsmos_<name>_summary.json``
        (means) and the enhanced recordings to ``enhanced_folder/<name>/``,
        and logs a table. The main process does the work; the others wait.
        With ``--debug`` only ``debug_batches`` recordings are processed.
        Without the ``speechmos`` package it logs a warning and returns None.

        Arguments
        ---------
        dataset : speechbrain.dataio.dataset.DynamicItemDataset
            Items with ``id`` and ``noisy_sig`` (1-D, at ``sample_rate``).
        name : str
            Names the outputs.
        max_key, min_key : str
            Which checkpoint to load (as in ``evaluate``).

        Returns
        -------
        dict or None
            The summary (on the main process).
        """
        if not reporting.dnsmos_available(name):
            return None
        self.on_evaluate_start(max_key=max_key, min_key=min_key)
        self.modules.eval()
        count = len(dataset)
        if self.debug:
            count = min(count, self.debug_batches)
        summary = None
        if count and if_main_process():
            folder = self.hparams.enhanced_folder
            rows = reporting.score_without_reference(
                self.enhance_recording,
                dataset,
                self.hparams.sample_rate,
                count,
                enhanced_folder=pathlib.Path(folder) / name if folder else None,
            )
            summary = reporting.write_dnsmos_report(
                self.hparams.output_folder,
                name,
                rows,
                self.hparams.epoch_counter.current,
            )
        ddp_barrier()
        return summary

    def enhance_recording(self, noisy):
        """Enhances one whole recording [T] with the model as loaded; returns
        it on the CPU."""
        noisy = noisy.to(self.device).unsqueeze(0)
        with torch.no_grad(), self.evaluation_ctx:
            enhanced, _ = self._model()(noisy, torch.ones(1, device=self.device))
        return enhanced[0].detach().float().cpu()
