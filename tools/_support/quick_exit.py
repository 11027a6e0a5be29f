"""A tool's process exits without freeing its objects one by one.

A process that imported torch and a codebase holds about half a million Python objects. At exit,
Python's finalization walks and frees them all, which takes 2–3 s on 2 cores (mmseg and mmdet
imported), after the tool's work and output are done: the operating system reclaims the memory
anyway. :func:`skip_final_collection` makes the exit collect the garbage there is once (objects
in unreachable reference cycles are finalized, their ``__del__`` run, as a normal exit would) and
then freeze every object (``gc.freeze``), so the finalization skips the objects still alive.
Python never promised to finalize those (its data model: ``__del__`` is not guaranteed for
objects that exist when the interpreter exits); the other exit functions (logging's flush,
``weakref.finalize`` callbacks, joining worker processes) still run.
"""
import atexit
import gc


def _collect_then_freeze() -> None:
    gc.collect()
    gc.freeze()


def skip_final_collection() -> None:
    """Register the quick exit (once); call it from a tool's ``__main__`` block, not a library."""
    atexit.unregister(_collect_then_freeze)  # registered once, however often it is called
    atexit.register(_collect_then_freeze)
