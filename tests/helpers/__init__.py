"""Shared pieces of the test suite (test files import from here, never from each other).

* :mod:`helpers.vectors_path` -- where Bifrost's golden vectors are, and ``needs_vectors``.
* :mod:`helpers.format_harness` -- vector loading, HeaderInfo replay, reference placement.
* :mod:`helpers.format_stream` -- packet streams and DiskReader runs for format tests.
* :mod:`helpers.chips` -- a small CHIPS stream for capture-engine tests.
* :mod:`helpers.gappy_chips` -- a CHIPS file with silent sources, for ring tests.
* :mod:`helpers.cli` -- running ``asbru`` commands in subprocesses; free ports.
* ``lsl_oracle.py`` -- a script (run in a subprocess) reading frames with LSL.
"""
