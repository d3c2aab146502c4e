"""The train-and-test sequence that every enhancement recipe runs.

A recipe's ``train.py`` names its data preparation and calls
:func:`run_enhancement_recipe`; everything else (experiment folder, DDP
group, datasets, :class:`cmse_speechbrain.brain.CMSEBrain`, training, every
test set, DNSMOS of the recordings without references) is the same for
VoiceBank, DNS and any new dataset.

Authors
 * cmse-speechbrain contributors 2026
"""

import pathlib
import shutil
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.sampler import (
    ReproducibleRandomSampler,
    ReproducibleWeightedRandomSampler,
)
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.parameter_transfer import Pretrainer

from cmse_speechbrain.brain import CMSEBrain
from cmse_speechbrain.dataio import enhancement_dataio_prep


def run_enhancement_recipe(argv, prepare):
    """Parses the command line, prepares the data, trains and tests.

    Arguments
    ---------
    argv : list of str
        ``hparams.yaml`` followed by SpeechBrain run options and overrides.
    prepare : callable
        ``prepare(hparams)``: writes the manifests the YAML names; run on
        the main process only.

    Returns
    -------
    dict
        As :func:`train_and_test` returns it.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    return train_and_test(hparams, run_opts, prepare, hparams_file, overrides)


def start_experiment(hparams, run_opts, hparams_file=None, overrides=None):
    """Joins the DDP group and creates the experiment folder (hyperparameters,
    overrides, environment), with a copy of the recipe's ``train.py``:
    what every recipe, enhancement or ASR, does first.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters (``output_folder``).
    run_opts : dict
        SpeechBrain run options.
    hparams_file : str, optional
        Saved in the experiment folder with ``overrides``.
    overrides : str or dict, optional
        The overrides that were applied.
    """
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides or {},
    )
    # SpeechBrain saves the calling file (this one); save the recipe too
    main_script = getattr(sys.modules["__main__"], "__file__", None)
    if main_script and if_main_process():
        shutil.copy(main_script, hparams["output_folder"])


def load_initial_weights(module, checkpoint, save_folder, name="model"):
    """Loads the weights a run starts from (a recipe's ``init_from`` /
    ``asr_init_from``), with SpeechBrain's ``Pretrainer`` (a local file,
    collected on the main process, linked into ``save_folder/init``). The
    run's own checkpoints, recovered when it trains, win over them.

    Arguments
    ---------
    module : torch.nn.Module
        The module to load (its architecture must match the checkpoint's).
    checkpoint : str or pathlib.Path
        A state-dict file of that module (e.g. a recipe checkpoint's
        ``model.ckpt`` or ``asr_model.ckpt``, an exported folder's
        ``enhance_model.ckpt`` or ``asr/encoder.ckpt``).
    save_folder : str or pathlib.Path
        The run's checkpoint folder.
    name : str
        The loadable's name (and the linked file's, ``<name>.ckpt``).

    Example
    -------
    >>> import torch
    >>> net = torch.nn.Linear(2, 2)
    >>> path = getfixture("tmp_path") / "start.ckpt"
    >>> torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    >>> load_initial_weights(net, path, getfixture("tmp_path") / "save")
    >>> torch.equal(net.weight, torch.load(path)["weight"])
    True
    """
    pathlib.Path(save_folder).mkdir(parents=True, exist_ok=True)
    pretrainer = Pretrainer(
        collect_in=pathlib.Path(save_folder) / "init",
        loadables={name: module},
        paths={name: str(pathlib.Path(checkpoint).resolve())},
    )
    run_on_main(pretrainer.collect_files)
    pretrainer.load_collected()


def corpus_sampling_weights(corpora, shares):
    """Per-item sampling weights that give each corpus its share of the draws.

    Each named corpus gets its ``shares`` entry; the items of the corpora not
    named share the rest. Within a corpus every item is equally likely (as
    without shares, where a large corpus dominates by its file count).

    Arguments
    ---------
    corpora : list of str
        The corpus of each training item (the manifest's ``corpus`` field).
    shares : dict
        Corpus name -> fraction of the draws, each in [0, 1], summing to at
        most 1 (exactly 1 when every corpus is named).

    Returns
    -------
    list of float
        One weight per item, summing to 1.

    Example
    -------
    >>> corpora = ["collection"] * 2 + ["speechocean762"] * 8
    >>> weights = corpus_sampling_weights(corpora, {"speechocean762": 0.3})
    >>> round(sum(weights[:2]), 6), round(sum(weights[2:]), 6)
    (0.7, 0.3)
    >>> corpus_sampling_weights(corpora, {"speechocean": 0.3})
    Traceback (most recent call last):
     ...
    ValueError: train_corpus_shares names speechocean, which no training item has
    (corpora: collection, speechocean762)
    """
    counts = {}
    for corpus in corpora:
        counts[corpus] = counts.get(corpus, 0) + 1
    for name, share in shares.items():
        if name not in counts:
            raise ValueError(
                f"train_corpus_shares names {name}, which no training item has "
                f"(corpora: {', '.join(sorted(counts))})"
            )
        if not 0.0 <= float(share) <= 1.0:
            raise ValueError(f"train_corpus_shares: {name}: {share} is not in [0, 1]")
    rest = 1.0 - sum(float(share) for share in shares.values())
    unnamed = sum(count for corpus, count in counts.items() if corpus not in shares)
    if rest < -1e-9 or (unnamed == 0 and rest > 1e-9):
        raise ValueError(
            f"train_corpus_shares {dict(shares)} must sum to "
            f"{'at most 1' if unnamed else '1 (every corpus is named)'}"
        )
    return [
        float(shares[corpus]) / counts[corpus] if corpus in shares else rest / unnamed
        for corpus in corpora
    ]


def train_and_test(hparams, run_opts, prepare=None, hparams_file=None, overrides=None):
    """Prepares the data, trains and tests on every test set.

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters.
    run_opts : dict
        SpeechBrain run options (device, precision, DDP, debug...).
    prepare : callable, optional
        ``prepare(hparams)``, run on the main process only.
    hparams_file : str, optional
        Saved in the experiment folder with ``overrides``.
    overrides : str or dict, optional
        The overrides that were applied.

    Returns
    -------
    dict
        ``test``: each test set's name mapped to its mean scores
        (:meth:`cmse_speechbrain.brain.CMSEBrain.test`); ``dnsmos``: with a
        ``real_annotation`` (recordings without clean references), their
        DNSMOS summary, else None (also None on processes other than the
        main one and without the ``speechmos`` package).
    """
    start_experiment(hparams, run_opts, hparams_file, overrides)
    if prepare is not None:
        run_on_main(prepare, args=[hparams])
    datasets = enhancement_dataio_prep(hparams)

    if hparams.get("init_from"):  # weights to start from; a checkpoint of the run wins
        load_initial_weights(
            hparams["modules"]["model"], hparams["init_from"], hparams["save_folder"]
        )
    train_loader_kwargs = dict(hparams["train_dataloader_opts"])
    steps_per_epoch = hparams.get("train_steps_per_epoch")
    shares = hparams.get("train_corpus_shares")
    if shares and not steps_per_epoch:
        raise ValueError("train_corpus_shares needs train_steps_per_epoch")
    if steps_per_epoch:  # on-the-fly crops: an epoch is a number of steps
        num_samples = steps_per_epoch * train_loader_kwargs["batch_size"]
        if shares:  # crops drawn by corpus (the manifest's "corpus" field)
            train = datasets["train"]
            corpora = [train.data[i].get("corpus", "") for i in train.data_ids]
            train_loader_kwargs["sampler"] = ReproducibleWeightedRandomSampler(
                corpus_sampling_weights(corpora, shares),
                num_samples=num_samples,
                replacement=True,
                seed=hparams["seed"],
            )
        else:
            train_loader_kwargs["sampler"] = ReproducibleRandomSampler(
                datasets["train"],
                seed=hparams["seed"],
                replacement=True,
                num_samples=num_samples,
            )
        train_loader_kwargs["shuffle"] = False

    brain = CMSEBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        epoch_counter=brain.hparams.epoch_counter,
        train_set=datasets["train"],
        valid_set=datasets["valid"],
        train_loader_kwargs=train_loader_kwargs,
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    several = bool(hparams.get("test_annotations"))  # named test sets
    test_stats = {
        name: brain.test(
            test_set,
            name=name if several else None,
            max_key="quality",
            test_loader_kwargs=hparams["test_dataloader_opts"],
        )
        for name, test_set in datasets["test"].items()
    }
    dnsmos_stats = None
    if "real" in datasets:  # recordings without references: DNSMOS
        dnsmos_stats = brain.evaluate_without_reference(
            datasets["real"], name="real", max_key="quality"
        )
    return {"test": test_stats, "dnsmos": dnsmos_stats}
