"""Peak memory of a ``python -m geedl_plugin ...`` child, measured inside the child.

``ru_maxrss`` of a child process is not its own peak on Linux: at ``exec`` the kernel carries
the high-water mark of the address space being replaced into the child's ``maxrss``, and
CPython's ``subprocess`` starts children with ``vfork``, whose address space is the parent's.
A benchmark that has loaded torch or a model therefore sees its own peak in the child's figure.
The wrapper below runs the command module in the child and writes the child's own ``VmHWM``
to a file when it exits.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_PEAK_WRAPPER = """
import atexit, resource, runpy, sys
report = sys.argv.pop(1)
def _peak():
    try:
        with open('/proc/self/status') as status:
            kb = next(int(l.split()[1]) for l in status if l.startswith('VmHWM'))
    except (OSError, StopIteration):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(report, 'w') as out:
        out.write(str(kb))
atexit.register(_peak)
sys.argv = ['geedl_plugin'] + sys.argv[1:]
runpy.run_module('geedl_plugin', run_name='__main__', alter_sys=True)
"""


def geedl_command(arguments: list[str], report: Path) -> list[str]:
    """The command line that runs ``python -m geedl_plugin <arguments>`` and writes its peak (kB)
    to ``report``."""
    report.unlink(missing_ok=True)
    return [sys.executable, "-c", _PEAK_WRAPPER, str(report), *arguments]


def read_peak_mb(report: Path) -> float:
    """The child's own peak resident memory in MB, from the report its wrapper wrote."""
    return int(report.read_text()) / 1024.0


def popen_geedl(arguments: list[str], report: Path, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(geedl_command(arguments, report), cwd=cwd, **kwargs)
