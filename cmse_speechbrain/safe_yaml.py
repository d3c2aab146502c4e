"""Loading model folders without running code from them.

A SpeechBrain model folder's ``hyperparams.yaml`` is a program: HyperPyYAML
imports and calls whatever its ``!new:``, ``!name:``, ``!apply:`` ... tags
name, and a plain string such as ``(...)`` is parsed by PyYAML's unsafe
loader. :func:`load_hyperparams` therefore first checks the parsed YAML,
before anything is imported or built:

* tags: only ``!new:`` of the classes in :data:`ALLOWED_CLASSES` (and the
  ``nn.Module`` classes of :data:`MODEL_MODULES`), ``!name:`` of
  :data:`ALLOWED_FUNCTIONS`, ``!ref``/``!copy`` of a plain ``<key>``
  (no attribute access, no arithmetic), ``!include:`` of a file inside the
  folder, and the standard YAML types. Everything else (``!apply:``,
  ``!applyref:``, ``!module:``, ``!!python/...``, any other module) is
  refused with an :class:`UnsafeModelError` naming the file, the line and
  the tag;
* size: a file over 1 MB, nesting deeper than 64 levels, or anchors,
  aliases and references that expand to more than 100,000 nodes (a YAML
  bomb) are refused.

It then builds the objects with a loader that knows only those tags (so a
check that missed something still cannot call anything else).
:func:`load_pretrained` does what SpeechBrain's ``from_hparams`` does for a
local folder, with that loader: each ``Pretrainer`` loadable is read from
``<name>.ckpt`` beside the YAML, network weights with
``torch.load(weights_only=True)``. ``trust_code=True`` loads any
SpeechBrain YAML the usual way, with a warning.

Authors
 * cmse-speechbrain contributors 2026
"""

import functools
import importlib
import inspect
import io
import os
import pathlib
import pickle
import re
import stat
import struct
import warnings

import ruamel.yaml
import torch
import yaml
from hyperpyyaml.core import load_hyperpyyaml, resolve_references
from ruamel.yaml.loader import SafeLoader
from ruamel.yaml.tag import Tag

# What torch.load(weights_only=True) raises for pickled code (refused), a
# truncated archive or a file that is no checkpoint at all.
# Garbage (a text file, a cut pickle) raises any of the others.
UNSAFE_LOAD_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    RuntimeError,
    ValueError,
    OSError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    struct.error,
)


def describe_load_error(error):
    """One line naming the error, for messages about refused checkpoints.

    Example
    -------
    >>> describe_load_error(EOFError("Ran out of input"))
    'EOFError: Ran out of input'
    """
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"


#: Classes a model folder may build with ``!new:``.
ALLOWED_CLASSES = frozenset(
    {
        "cmse_speechbrain.asr.CharCTCModel",
        "speechbrain.utils.parameter_transfer.Pretrainer",
        "speechbrain.dataio.encoder.CTCTextEncoder",
        "speechbrain.dataio.preprocess.AudioNormalizer",
        "torch.nn.ModuleDict",
        "torch.nn.ModuleList",
        "torch.nn.Sequential",
        "torch.nn.Identity",
    }
)
#: Functions a model folder may name with ``!name:`` (never called at load).
ALLOWED_FUNCTIONS = frozenset(
    {
        "speechbrain.decoders.ctc_greedy_decode",
        "speechbrain.decoders.ctc.ctc_greedy_decode",
    }
)
#: Modules of this package whose ``nn.Module`` classes ``!new:`` may build.
MODEL_MODULES = ("cmse_speechbrain.cmcr_net",)
#: Keyword arguments a model folder may give the ``Pretrainer``: no
#: ``paths`` (files elsewhere, or hub downloads), hooks or conditions.
PRETRAINER_ARGS = frozenset({"loadables"})

MAX_YAML_BYTES = 1_000_000
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_INCLUDE_DEPTH = 4

_STANDARD_TAGS = {
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "seq", "map", "merge")
}
_PLAIN_REFERENCE = re.compile(r"<([^<>.*%]+)>")
_TRUST_HINT = "load it with trust_code=True (--trust-code) only if you trust its author"


class UnsafeModelError(ValueError):
    """A model file refused because loading it could run code or exhaust
    memory; the message names the file, the line and the problem."""

    def __init__(self, path, line, problem):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {problem}")


def _tag_text(tag):
    """How a tag is written in the file (``!!python/...`` for long tags)."""
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


def _model_class(qualified_name):
    """The class named, if it is an ``nn.Module`` of :data:`MODEL_MODULES`.

    Only modules of this package are imported, and only after the name has
    been matched against them, so a YAML never decides what is imported.
    """
    module_name, _, class_name = qualified_name.rpartition(".")
    if module_name not in MODEL_MODULES or not class_name.isidentifier():
        return None
    if class_name.startswith("_"):
        return None
    candidate = getattr(importlib.import_module(module_name), class_name, None)
    if (
        inspect.isclass(candidate)
        and issubclass(candidate, torch.nn.Module)
        and candidate.__module__ == module_name
    ):
        return candidate
    return None


def is_allowed_class(qualified_name):
    """Whether ``!new:<qualified_name>`` is allowed in a model folder.

    Example
    -------
    >>> is_allowed_class("cmse_speechbrain.cmcr_net.CMCRNet")
    True
    >>> is_allowed_class("subprocess.Popen"), is_allowed_class("os.system")
    (False, False)
    """
    return qualified_name in ALLOWED_CLASSES or _model_class(qualified_name) is not None


def _locate(qualified_name):
    """Imports an allowed name (checked by the caller)."""
    model = _model_class(qualified_name)
    if model is not None:
        return model
    module_name, _, attribute = qualified_name.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def _read_yaml(path):
    """The text of a YAML file, which must be a regular file of at most
    :data:`MAX_YAML_BYTES` (not a device or a pipe that never ends)."""
    path = pathlib.Path(path)
    real = pathlib.Path(os.path.realpath(path))
    try:
        info = os.stat(real)
    except OSError as error:
        raise FileNotFoundError(f"{path}: cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeModelError(path, None, "is not a regular file")
    if info.st_size > MAX_YAML_BYTES:
        raise UnsafeModelError(
            path,
            None,
            f"is {info.st_size} bytes; a model YAML may have {MAX_YAML_BYTES}",
        )
    try:
        with open(real, encoding="utf-8") as fin:
            return fin.read(MAX_YAML_BYTES + 1)
    except UnicodeDecodeError:
        raise UnsafeModelError(path, None, "is not UTF-8 text") from None


class _Checker:
    """Walks the composed YAML graph of a file (and what it includes)."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.nodes = 0

    def check_file(self, path, text, include_depth=0):
        try:
            document = ruamel.yaml.YAML().compose(io.StringIO(text))
        except RecursionError:
            raise UnsafeModelError(path, None, "nested too deeply") from None
        except ruamel.yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise UnsafeModelError(path, line, f"not valid YAML ({problem})") from None
        if not isinstance(document, ruamel.yaml.MappingNode):
            raise UnsafeModelError(path, 1, "the document must be a mapping")
        self._file = (path, document, include_depth)
        sizes, active = {}, set()
        self.nodes += self._size(document, sizes, active, 0)

    def _fail(self, node, problem):
        raise UnsafeModelError(self._file[0], node.start_mark.line + 1, problem)

    def _size(self, node, sizes, active, depth):
        """Nodes in ``node`` with aliases and references expanded."""
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            self._fail(node, "refers to itself (recursive alias or reference)")
        if depth > MAX_DEPTH:
            self._fail(node, f"nested deeper than {MAX_DEPTH} levels")
        active.add(key)
        size = 1 + self._check_tag(node, sizes, active, depth)
        if isinstance(node, ruamel.yaml.MappingNode):
            for k, v in node.value:
                size += self._size(k, sizes, active, depth + 1)
                size += self._size(v, sizes, active, depth + 1)
        elif isinstance(node, ruamel.yaml.SequenceNode):
            for item in node.value:
                size += self._size(item, sizes, active, depth + 1)
        active.discard(key)
        if self.nodes + size > MAX_NODES:
            self._fail(
                node,
                f"expands to more than {MAX_NODES} nodes through anchors, aliases "
                "or references (a YAML bomb?)",
            )
        sizes[key] = size
        return size

    def _check_tag(self, node, sizes, active, depth):
        """Refuses a tag not on the allowlist; the extra size it brings."""
        tag = node.tag
        if tag in _STANDARD_TAGS or tag == "!tuple":
            if isinstance(node, ruamel.yaml.ScalarNode) and _TUPLE.match(node.value):
                self._check_tuple(node)
            return 0
        shown = _tag_text(tag)
        if tag in ("!ref", "!copy"):
            value = node.value if isinstance(node, ruamel.yaml.ScalarNode) else None
            match = _PLAIN_REFERENCE.fullmatch(value or "")
            if match is None:
                self._fail(
                    node,
                    f"{shown} {value!r}: only a plain reference such as <key> is "
                    "allowed (no attribute access, arithmetic or string building)",
                )
            target = self._target(match.group(1))
            return 0 if target is None else self._size(target, sizes, active, depth + 1)
        if tag.startswith("!new:"):
            name = tag[len("!new:") :]
            if not is_allowed_class(name):
                self._fail(
                    node,
                    f"{shown}: {name} is not a class a "
                    f"model folder may build; {_TRUST_HINT}",
                )
            if name == "speechbrain.utils.parameter_transfer.Pretrainer":
                self._check_pretrainer(node)
            return 0
        if tag.startswith("!name:"):
            name = tag[len("!name:") :]
            if name not in ALLOWED_FUNCTIONS:
                self._fail(
                    node,
                    f"{shown}: {name} is not a function a "
                    f"model folder may name; {_TRUST_HINT}",
                )
            return 0
        if tag.startswith("!include:"):
            return self._check_include(node, tag[len("!include:") :])
        self._fail(
            node, f"{shown}: this tag is not allowed in a model folder; {_TRUST_HINT}"
        )

    def _check_tuple(self, node):
        """A ``(a, b)`` string becomes a tuple: its items must be plain data."""
        try:
            items = yaml.compose("[" + node.value[1:-1] + "]")
        except yaml.YAMLError:
            return  # stays a string
        except RecursionError:
            self._fail(node, "a tuple nested too deeply")
        stack = [items]
        while stack:
            item = stack.pop()
            if item.tag not in _STANDARD_TAGS:
                self._fail(
                    node,
                    f"the tuple {node.value!r} holds the tag {_tag_text(item.tag)}",
                )
            if isinstance(item, yaml.MappingNode):
                stack.extend(v for pair in item.value for v in pair)
            elif isinstance(item, yaml.SequenceNode):
                stack.extend(item.value)

    def _check_pretrainer(self, node):
        if not isinstance(node, ruamel.yaml.MappingNode):
            return
        for key, _ in node.value:
            if key.value not in PRETRAINER_ARGS:
                self._fail(
                    key,
                    f"Pretrainer argument {key.value!r} is not allowed in a model "
                    "folder (its files are read from <name>.ckpt beside the YAML)",
                )

    def _target(self, reference, hops=0):
        """The node a ``<a[b]>`` reference names (following references on
        the way, as HyperPyYAML does), or None."""
        node = self._file[1]
        for part in reference.split("["):
            part = part.strip("]")
            while node.tag in ("!ref", "!copy") and hops < MAX_DEPTH:
                match = _PLAIN_REFERENCE.fullmatch(str(node.value))
                node = self._target(match.group(1), hops + 1) if match else None
                hops += 1
                if node is None:
                    return None
            if not isinstance(node, ruamel.yaml.MappingNode):
                return None
            node = next((v for k, v in node.value if k.value == part), None)
            if node is None:
                return None
        return node

    def _check_include(self, node, filename):
        path, document, include_depth = self._file
        # HyperPyYAML opens it relative to the real folder of the including file
        target = pathlib.Path(os.path.realpath(path)).parent / filename
        real = pathlib.Path(os.path.realpath(target))
        real_root = pathlib.Path(os.path.realpath(self.root))
        if real_root not in real.parents:
            self._fail(
                node,
                f"!include:{filename}: the file is "
                f"outside the model folder {self.root}",
            )
        if include_depth >= MAX_INCLUDE_DEPTH:
            self._fail(
                node,
                f"!include:{filename}: includes nested deeper than {MAX_INCLUDE_DEPTH}",
            )
        try:
            text = _read_yaml(target)
        except FileNotFoundError as error:
            self._fail(node, f"!include:{filename}: {error}")
        before = self.nodes
        self.check_file(target, text, include_depth + 1)
        self._file = (path, document, include_depth)
        included, self.nodes = self.nodes - before, before
        return included


def check_hyperparams(path, root=None):
    """Checks a model folder's YAML without running anything from it.

    Arguments
    ---------
    path : str or pathlib.Path
        The YAML file.
    root : str or pathlib.Path, optional
        The model folder (default: the file's folder); ``!include`` may not
        leave it.

    Returns
    -------
    str
        The file's text, as checked.

    Raises
    ------
    UnsafeModelError
        Naming the file, the line and the tag or problem.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> _ = (tmp / "hyperparams.yaml").write_text(
    ...     "sample_rate: 16000\\npwned: !apply:os.system [touch PWNED]\\n")
    >>> check_hyperparams(tmp / "hyperparams.yaml")
    Traceback (most recent call last):
     ...
    cmse_speechbrain.safe_yaml.UnsafeModelError: .../hyperparams.yaml, line 2:
    !apply:os.system: this tag is not allowed in a model folder; ...
    """
    path = pathlib.Path(path)
    root = pathlib.Path(root) if root is not None else path.parent
    text = _read_yaml(path)
    _Checker(root).check_file(path, text)
    return text


class _NamedStream(io.StringIO):
    """Text with the file's name, so that HyperPyYAML resolves includes
    relative to it."""

    def __init__(self, text, name):
        super().__init__(text)
        self.name = name


def _node_arguments(loader, node):
    if isinstance(node, ruamel.yaml.MappingNode):
        return [], loader.construct_mapping(node, deep=True)
    if isinstance(node, ruamel.yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True), {}
    return [], {}


def _refused(node, tag):
    # The checker refuses these first, with the line in the file itself.
    return UnsafeModelError(
        "<resolved YAML>", node.start_mark.line + 1, f"{tag}: not allowed"
    )


def _construct_new(loader, name, node):
    if not is_allowed_class(name):
        raise _refused(node, f"!new:{name}")
    args, kwargs = _node_arguments(loader, node)
    return _locate(name)(*args, **kwargs)


def _construct_name(loader, name, node):
    if name not in ALLOWED_FUNCTIONS:
        raise _refused(node, f"!name:{name}")
    args, kwargs = _node_arguments(loader, node)
    function = _locate(name)
    return functools.partial(function, *args, **kwargs) if args or kwargs else function


def _construct_tuple(loader, node):
    # HyperPyYAML parses "(a, b)" with PyYAML's unsafe loader: never here.
    text = loader.construct_scalar(node)
    try:
        return tuple(yaml.safe_load("[" + text[1:-1] + "]"))
    except yaml.YAMLError:
        raise ValueError(
            f"line {node.start_mark.line + 1}: {text!r} is not a tuple"
        ) from None


class _ModelLoader(SafeLoader):
    """PyYAML's safe types plus the HyperPyYAML tags a model folder may use."""

    def construct_object(self, node, deep=True):
        """Builds deep, as HyperPyYAML does (a ``!new:`` gets full dicts)."""
        return super().construct_object(node, deep=deep)

    def resolve(self, kind, value, implicit):
        """A plain ``(a, b)`` is a tuple, as in HyperPyYAML (whose way of
        saying so changes every ruamel loader of the process)."""
        if kind is ruamel.yaml.ScalarNode and implicit[0] and _TUPLE.match(value):
            return Tag(suffix="!tuple")
        return super().resolve(kind, value, implicit)


_TUPLE = re.compile(r"^\(.*\)$")
_ModelLoader.add_multi_constructor("!new:", _construct_new)
_ModelLoader.add_multi_constructor("!name:", _construct_name)
_ModelLoader.add_constructor("!tuple", _construct_tuple)


def load_hyperparams(
    path, overrides=None, overrides_must_match=True, trust_code=False, root=None
):
    """Loads a model folder's HyperPyYAML file without running code from it.

    Arguments
    ---------
    path : str or pathlib.Path
        The YAML file.
    overrides : dict, optional
        Values replacing the file's (from the caller, so trusted).
    overrides_must_match : bool
        Whether an override must name an existing key.
    trust_code : bool
        Load any HyperPyYAML (it may run any code), with a warning.
    root : str or pathlib.Path, optional
        The model folder (default: the file's folder).

    Returns
    -------
    dict
        The hyperparameters, objects built.

    Example
    -------
    >>> from cmse_speechbrain.inference import shipped_model_folder
    >>> hparams = load_hyperparams(shipped_model_folder() / "hyperparams.yaml")
    >>> type(hparams["enhance_model"]).__name__, hparams["sample_rate"]
    ('CMCRNet', 16000)
    """
    path = pathlib.Path(path)
    if trust_code:
        warnings.warn(
            f"{path}: loaded with trust_code=True: this file may run any code",
            stacklevel=2,
        )
        with open(path, encoding="utf-8") as fin:
            return load_hyperpyyaml(fin, overrides, overrides_must_match)
    text = check_hyperparams(path, root)
    try:
        resolved = resolve_references(
            _NamedStream(text, str(path)), overrides, overrides_must_match
        )
    except (ruamel.yaml.YAMLError, ValueError, KeyError, TypeError) as error:
        problem = " ".join(str(error).split())
        raise ValueError(
            f"{path}: a reference cannot be resolved ({problem})"
        ) from None
    loader = _ModelLoader(resolved)
    try:
        hparams = loader.get_single_data()
    except (
        yaml.YAMLError,
        ruamel.yaml.YAMLError,
        TypeError,
        ValueError,
        ArithmeticError,
    ) as error:
        problem = " ".join(str(error).split())
        raise ValueError(f"{path}: cannot build the model ({problem})") from None
    finally:
        loader.dispose()
    return {k: v for k, v in hparams.items() if not str(k).startswith("__")}


def load_parameters(loadables, folder):
    """Loads each object of a ``Pretrainer``'s loadables from
    ``folder/<name>.ckpt``: networks with ``torch.load(weights_only=True)``
    and a strict state-dict match, other objects (text encoders) with
    SpeechBrain's own loader.

    Arguments
    ---------
    loadables : dict
        Name -> object.
    folder : str or pathlib.Path
        The model folder.

    Raises
    ------
    ValueError
        A file that cannot be loaded safely or does not fit its network,
        named.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> torch.save(torch.nn.Linear(2, 2).state_dict(), tmp / "net.ckpt")
    >>> load_parameters({"net": torch.nn.Linear(2, 2)}, tmp)
    >>> load_parameters({"net": torch.nn.Linear(2, 3)}, tmp)
    Traceback (most recent call last):
     ...
    ValueError: .../net.ckpt: does not fit the network of this model folder ...
    """
    from speechbrain.utils.checkpoints import (
        DEFAULT_LOAD_HOOKS,
        DEFAULT_TRANSFER_HOOKS,
        get_default_hook,
        hook_on_loading_state_dict_checkpoint,
    )

    folder = pathlib.Path(folder)
    for name, obj in loadables.items():
        path = folder / f"{name}.ckpt"
        if pathlib.Path(str(name)).name != str(name) or str(name).startswith("."):
            raise ValueError(
                f"{folder}: loadable name {name!r} is not a plain file name"
            )
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing")
        check_inside(folder, path)
        if isinstance(obj, torch.nn.Module):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except UNSAFE_LOAD_ERRORS as error:
                raise ValueError(
                    f"{path}: cannot be loaded safely ({describe_load_error(error)})"
                ) from None
            if not isinstance(state, dict):
                raise ValueError(f"{path}: cannot be loaded safely (not a state dict)")
            broken = next(
                (
                    key
                    for key, value in state.items()
                    if isinstance(value, torch.Tensor)
                    and value.is_floating_point()
                    and not torch.isfinite(value).all()
                ),
                None,
            )
            if broken is not None:
                raise ValueError(
                    f"{path}: the weights {broken!r} hold NaN or infinite values"
                )
            try:
                obj.load_state_dict(
                    hook_on_loading_state_dict_checkpoint(state), strict=True
                )
            except RuntimeError as error:
                problem = " ".join(str(error).split())
                raise ValueError(
                    f"{path}: does not fit the network of "
                    f"this model folder ({problem[:300]})"
                ) from None
            continue
        hook = get_default_hook(obj, DEFAULT_TRANSFER_HOOKS)
        if hook is not None:
            hook(obj, path)
            continue
        hook = get_default_hook(obj, DEFAULT_LOAD_HOOKS)
        if hook is None:
            raise ValueError(f"{path}: no loader for a {type(obj).__name__}")
        hook(obj, path, False)


def check_inside(folder, path):
    """Refuses a model file that is (or links to) a file outside its folder.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> (tmp / "model").mkdir()
    >>> _ = (tmp / "secret.yaml").write_text("a: 1")
    >>> (tmp / "model" / "hyperparams.yaml").symlink_to(tmp / "secret.yaml")
    >>> check_inside(tmp / "model", tmp / "model" / "hyperparams.yaml")
    Traceback (most recent call last):
     ...
    cmse_speechbrain.safe_yaml.UnsafeModelError: .../model/hyperparams.yaml: links
    to .../secret.yaml, outside the model folder
    """
    real = pathlib.Path(os.path.realpath(path))
    if pathlib.Path(os.path.realpath(folder)) not in real.parents:
        raise UnsafeModelError(path, None, f"links to {real}, outside the model folder")


def check_weights_loaded(modules, pretrainer, where):
    """Refuses modules with parameters that the pretrainer does not load
    (they would keep their random initial weights).

    Arguments
    ---------
    modules : dict
        The folder's ``modules``.
    pretrainer : Pretrainer or None
        Its ``pretrainer`` (its ``loadables``).
    where : str or pathlib.Path
        The YAML file, for the message.

    Raises
    ------
    ValueError
        Naming the modules whose weights would stay random.

    Example
    -------
    >>> net = torch.nn.Linear(2, 2)
    >>> check_weights_loaded({"net": net, "norm": torch.nn.Identity()}, None, "h.yaml")
    Traceback (most recent call last):
     ...
    ValueError: h.yaml: no 'pretrainer' loads the weights of 'net': refusing random
    weights
    """
    loadables = getattr(pretrainer, "loadables", None) or {}
    loaded = {
        id(m)
        for obj in loadables.values()
        if isinstance(obj, torch.nn.Module)
        for m in obj.modules()
    }
    missing = [
        name
        for name, module in modules.items()
        if isinstance(module, torch.nn.Module)
        and id(module) not in loaded
        and any(True for _ in module.parameters())
    ]
    if missing:
        raise random_weights_error(where, missing)


def random_weights_error(where, names):
    """The error for modules whose weights no pretrainer loads."""
    names = ", ".join(repr(name) for name in names)
    return ValueError(
        f"{where}: no 'pretrainer' loads the weights "
        f"of {names}: refusing random weights"
    )


def load_pretrained(
    cls,
    source,
    hparams_file="hyperparams.yaml",
    overrides=None,
    overrides_must_match=True,
    trust_code=False,
    **kwargs,
):
    """A SpeechBrain ``Pretrained`` interface from a local model folder,
    without running code from the folder (see the module's docstring).

    Arguments
    ---------
    cls : type
        The interface class (``EnhanceCMCR``, ``EncoderASR``, ...).
    source : str or pathlib.Path
        The model folder.
    hparams_file : str
        Its YAML file.
    overrides : dict, optional
        Values replacing the file's.
    overrides_must_match : bool
        Whether an override must name an existing key.
    trust_code : bool
        Use SpeechBrain's own ``from_hparams`` (any YAML; it may run any
        code), with a warning; still local only.
    **kwargs
        Passed to the class (``run_opts``, ``freeze_params``).

    Returns
    -------
    The interface.

    Example
    -------
    >>> from speechbrain.inference.interfaces import Pretrained
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> from cmse_speechbrain.export import inference_yaml
    >>> folder = getfixture("tmp_path")
    >>> net = CMCRNet(channels=[4, 8, 8, 8, 8], d_model=16, nhead=2)
    >>> _ = (folder / "hyperparams.yaml").write_text(inference_yaml(net))
    >>> torch.save(net.state_dict(), folder / "enhance_model.ckpt")
    >>> model = load_pretrained(Pretrained, folder)
    >>> type(model.mods.enhance_model).__name__
    'CMCRNet'
    """
    folder = pathlib.Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"{source}: no such model folder")
    if not os.path.lexists(folder / hparams_file):
        raise FileNotFoundError(f"{folder / hparams_file}: missing")
    check_inside(folder, folder / hparams_file)
    if trust_code:  # SpeechBrain reads the folder's files: none may lead outside
        for path in sorted(folder.iterdir()):
            if path.is_symlink():
                check_inside(folder, path)
        from speechbrain.inference.interfaces import pretrained_from_hparams
        from speechbrain.utils.fetching import FetchConfig, LocalStrategy

        warnings.warn(
            f"{folder}: loaded with trust_code=True: "
            f"its {hparams_file} may run any code",
            stacklevel=2,
        )
        kwargs.setdefault("savedir", str(folder))
        kwargs.setdefault("local_strategy", LocalStrategy.NO_LINK)
        kwargs.setdefault("fetch_config", FetchConfig(allow_network=False))
        return pretrained_from_hparams(
            cls,
            source=str(folder),
            hparams_file=hparams_file,
            overrides=overrides or {},
            overrides_must_match=overrides_must_match,
            **kwargs,
        )
    for ignored in ("savedir", "local_strategy", "fetch_config"):
        kwargs.pop(ignored, None)  # the files are read in place, never fetched
    hparams = load_hyperparams(
        folder / hparams_file, overrides, overrides_must_match, root=folder
    )
    if "modules" not in hparams:
        raise ValueError(f"{folder / hparams_file}: no 'modules' key")
    hparams["savedir"] = str(folder)
    pretrainer = hparams.get("pretrainer")
    if pretrainer is not None:
        if not isinstance(getattr(pretrainer, "loadables", None), dict):
            raise ValueError(
                f"{folder / hparams_file}: 'pretrainer' is not a Pretrainer"
            )
        load_parameters(pretrainer.loadables, folder)
    check_weights_loaded(hparams["modules"], pretrainer, folder / hparams_file)
    return cls(modules=hparams["modules"], hparams=hparams, **kwargs)
