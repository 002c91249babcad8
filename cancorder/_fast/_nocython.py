"""Stands in for the ``cython`` module where Cython is not installed (a pure-Python install).

The hot modules read only ``cython.compiled`` at run time; everything else of Cython's appears
in the branches that run compiled, or in the .pxd files.
"""
compiled = False
