"""Dense integer codes for string ids, so per-request sums can be numpy bincounts over arrays
of codes instead of dict walks (user-CF's rows, item-CF's neighbour lists).

>>> codes = Codes()
>>> codes.add("phone"), codes.add("case"), codes.add("phone")
(0, 1, 0)
>>> codes.forget("phone"); codes.add("cable"), codes.names
(0, ['cable', 'case'])
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]


class Codes:
    """Dense integer codes for ids. A forgotten id's code is recycled: the arrays that held it
    were dropped with its entries."""

    __slots__ = ("_free", "code", "names")

    def __init__(self) -> None:
        self.code: dict[str, int] = {}
        self.names: list[str] = []  # code -> id ("" for a free code)
        self._free: list[int] = []

    def add(self, name: str) -> int:
        """The id's code, given one if it has none."""
        code = self.code.get(name)
        if code is None:
            if self._free:
                code = self._free.pop()
                self.names[code] = name
            else:
                code = len(self.names)
                self.names.append(name)
            self.code[name] = code
        return code

    def forget(self, name: str) -> None:
        code = self.code.pop(name, None)
        if code is not None:
            self.names[code] = ""
            self._free.append(code)
