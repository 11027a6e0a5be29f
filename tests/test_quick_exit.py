"""The tools' quick exit (tools/_support/quick_exit.py): garbage is still finalized, exit
functions still run, and the objects left alive are frozen, not freed one by one."""
import subprocess
import sys

from conftest import REPO_ROOT

SCRIPT = """
import atexit, gc, os.path as osp, sys, weakref
sys.path.insert(0, osp.join(sys.argv[1], 'tools'))
out = sys.argv[2]


def after_quick_exit():  # registered first, so it runs last
    open(out + '.frozen', 'w').write(str(gc.get_freeze_count()))


atexit.register(after_quick_exit)
gc.disable()  # only an explicit collection finalizes the cycle below
from _support.quick_exit import skip_final_collection
skip_final_collection()
skip_final_collection()  # once only


class InACycle:
    def __del__(self):
        open(out + '.finalized', 'w').write('yes')


garbage = InACycle()
garbage.me = garbage
del garbage


class Alive:
    pass


alive = Alive()
weakref.finalize(alive, lambda: open(out + '.weakref', 'w').write('yes'))
"""


def test_quick_exit_finalizes_garbage_runs_exit_functions_and_freezes_the_rest(tmp_path):
    out = tmp_path / 'mark'
    result = subprocess.run(
        [sys.executable, '-c', SCRIPT, REPO_ROOT, str(out)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == '', result.stderr
    assert (tmp_path / 'mark.finalized').read_text() == 'yes'  # the garbage's __del__ ran
    assert (tmp_path / 'mark.weakref').read_text() == 'yes'  # weakref.finalize's exit function
    assert int((tmp_path / 'mark.frozen').read_text()) > 1000  # the interpreter's objects
