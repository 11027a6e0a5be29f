"""The error GLNet raises for settings it cannot be built with."""


class GLNetConfigError(ValueError, TypeError):
    """A GLNet setting (``arch``, ``out_indices``, ``drop_path_rate``, ``compile_blocks``, ...)
    with a value GLNet cannot be built with; the message names the value, the choices and what
    to do.

    Raised while the model is built, before any work. A ``ValueError`` and a ``TypeError``
    (wrong values and wrong types alike), so code that catches either still does; the tools
    catch this class to report a config mistake in one line.
    """
