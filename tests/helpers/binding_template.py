"""A template of one kernel (see asbru/formats/engine.py), for tests/test_kernel_binding.py."""
from asbru.formats.engine import bound_kernel
from helpers.binding_parts import plus_one as _value

BINDS = ("_value",)


@bound_kernel
def apply(x):
    return _value(x)
