"""Shared fixtures: the instruction-set fixture runs a test once per ISA this build knows,
skipping (with the reason) those the CPU, the build or QTK_ISA rule out."""

import pytest

import qtoolkit
from qtoolkit import _clib

ALL_ISAS = _clib.isa_names()


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    name = request.param
    if name not in qtoolkit.available_isas():
        if name in _clib.supported_isas():
            pytest.skip(f"{name} is capped by QTK_ISA={__import__('os').environ.get('QTK_ISA')}")
        pytest.skip(f"{name} is not supported by this CPU or build")
    before = qtoolkit.active_isa()
    qtoolkit.set_isa(name)
    try:
        yield name
    finally:
        qtoolkit.set_isa(before)
