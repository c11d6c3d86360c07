"""A stand-in sandbox server (both generations, 2.x and 3.x) with fault injection.

    from sandbox_exporter.emulator import Emulator, Fault

    with Emulator(api=3, containers=2, usage_delay=0.05) as emu:
        emu.set_fault("execute", Fault(status=500))
        ...  # talk to emu.url

It runs commands for real, with bash, as the current user, so it listens on
loopback only unless told otherwise. See `python -m sandbox_exporter.emulator --help`.
"""

from .faults import ALL_ENDPOINTS, ENDPOINTS, Fault, parse_fault_spec
from .server import CONTROL_PATH, Emulator, default_libraries

__all__ = [
    "ALL_ENDPOINTS",
    "CONTROL_PATH",
    "ENDPOINTS",
    "Emulator",
    "Fault",
    "default_libraries",
    "parse_fault_spec",
]
