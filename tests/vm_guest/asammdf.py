"""Only in the test VM's guest (tests/vm.py's agent puts this folder first on PYTHONPATH).

python-can imports asammdf (and with it numpy, pandas and sympy) on ``import can`` when it is
installed: 0.9 s on this machine, 50 s in the TCG guest the first time. No VM test records or
reads .mf4, so there python-can finds no asammdf, as on a machine without the ``mf4`` extra.
"""
raise ImportError("asammdf is left out in the SocketCAN test VM (tests/vm_guest)")
