"""Pausing the cycle collector while a million small objects are built.

Building many container objects (tuples, lists, records) sets the cycle
collector off again and again: each pass finds nothing to free (they are all
alive) and walks more of them, so bulk building costs twice what it should.
:class:`NoGC` pauses it for a block and puts it back as it was.
"""

import gc

__all__ = ["NoGC"]


class NoGC:
    """A block during which the cycle collector does not run (see the module docs)."""

    __slots__ = ("was",)

    def __enter__(self) -> None:
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was:
            gc.enable()
