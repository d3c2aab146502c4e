"""One record of a network's constructor arguments.

:func:`record_init` decorates a module's ``__init__``: every instance then
holds, in ``config``, the keyword arguments it was built with (defaults
filled in, tuples as lists), taken from the call itself. An exported model
folder writes its network from that record (:func:`init_yaml`), so the
folder cannot differ from the network it was made from, and a class that
gains an argument needs no change elsewhere.

Authors
 * cmse-speechbrain contributors 2026
"""

import functools
import inspect
import json

import yaml


def _plain(value):
    """A copy of an argument with tuples as lists (what YAML gives back)."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def record_init(init):
    """Decorator of ``__init__``: keeps its arguments in ``self.config``.

    The record is set after ``__init__`` returns, so a subclass's record
    (also decorated) replaces its parent's. ``*args`` are refused: each
    argument needs a name to be written to a YAML.

    Arguments
    ---------
    init : callable
        The ``__init__`` to wrap.

    Returns
    -------
    callable

    Example
    -------
    >>> import torch
    >>> class Net(torch.nn.Module):
    ...     @record_init
    ...     def __init__(self, sizes=(4, 8), scale=1.0, **extra):
    ...         super().__init__()
    >>> Net(scale=2.0, bias=True).config
    {'sizes': [4, 8], 'scale': 2.0, 'bias': True}
    >>> [name for name, _ in Net().named_parameters()]  # nothing in the state_dict
    []
    """
    signature = inspect.signature(init)
    if any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
        raise TypeError(f"{init.__qualname__}: *args cannot be recorded by name")

    @functools.wraps(init)
    def recording_init(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        record = {}
        for name, value in list(bound.arguments.items())[1:]:
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                record.update(_plain(value))
            else:
                record[name] = _plain(value)
        init(self, *args, **kwargs)
        self.config = record

    recording_init.records_init = True
    return recording_init


def init_yaml(module, indent=4):
    """The ``!new:`` YAML node that rebuilds ``module`` from its record.

    Arguments
    ---------
    module : torch.nn.Module
        An instance of a class whose ``__init__`` has :func:`record_init`.
    indent : int
        Spaces before each argument.

    Returns
    -------
    str
        ``!new:<module>.<Class>`` and one ``name: value`` line per argument
        (values as JSON, which YAML reads back unchanged).

    Example
    -------
    >>> from cmse_speechbrain.cmcr_net import CMCRNet
    >>> net = CMCRNet(channels=[4, 8, 8, 8, 8])
    >>> print(init_yaml(net, indent=2))  # doctest: +ELLIPSIS
    !new:cmse_speechbrain.cmcr_net.CMCRNet
      sample_rate: 16000
      n_fft: 512
      hop_length: 256
      channels: [4, 8, 8, 8, 8]
    ...
      control_width: null
    """
    cls = type(module)
    if not getattr(cls.__init__, "records_init", False):
        raise TypeError(f"{cls.__qualname__}: its __init__ has no @record_init")
    lines = [f"!new:{cls.__module__}.{cls.__qualname__}"]
    for name, value in module.config.items():
        try:
            text = json.dumps(value, allow_nan=False)
            readable = yaml.safe_load(text) == value
        except (TypeError, ValueError):
            readable = False
        if not readable:
            raise TypeError(
                f"{cls.__qualname__}: argument "
                f"{name}={value!r} cannot be written to a YAML"
            )
        lines.append(f"{' ' * indent}{name}: {text}")
    return "\n".join(lines)
