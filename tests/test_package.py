"""The package's public names: every module is listed, every exported name
resolves, and importing the package alone stays light."""

import pathlib
import subprocess
import sys

import cmse_speechbrain

PACKAGE = pathlib.Path(cmse_speechbrain.__file__).parent


def test_every_module_is_named():
    on_disk = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert sorted(cmse_speechbrain.MODULES) == on_disk


def test_every_exported_name_resolves():
    for name in cmse_speechbrain.__all__:
        assert getattr(cmse_speechbrain, name) is not None, name
    assert set(cmse_speechbrain.__all__) <= set(dir(cmse_speechbrain))
    try:
        cmse_speechbrain.no_such_name
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_import_is_light():
    code = (
        "import sys, cmse_speechbrain; "
        "print(sorted(m for m in ('torch', 'speechbrain') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
