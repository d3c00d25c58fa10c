"""One error hierarchy for the whole package.

Every error raised on purpose is a :class:`LstmVerifyError`; each subclass also inherits the
built-in exception a caller would expect, so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class LstmVerifyError(Exception):
    """Base class of every error lstm-verify raises on purpose."""


class SpecError(LstmVerifyError, ValueError):
    """A spec file is malformed, hostile or inconsistent.

    ``path``, ``equation`` and ``column`` (1-based) say where; any may be ``None``.
    """

    def __init__(self, message: str, *, path=None, equation=None, column=None):
        self.path = None if path is None else str(path)
        self.equation = equation
        self.column = column
        self.detail = message
        where = []
        if self.path:
            where.append(self.path)
        if equation is not None:
            where.append(f"equation {equation!r}")
        if column is not None:
            where.append(f"column {column}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ShapeError(LstmVerifyError, ValueError):
    """Arrays handed to a generated implementation have the wrong shape, dtype or names."""


class VerificationError(LstmVerifyError, AssertionError):
    """An implementation disagrees with an oracle beyond tolerance."""


class DtypeError(LstmVerifyError, TypeError, ValueError):
    """An argument is not an array of a floating dtype, or its dtype (or device) differs from
    that of the parameters. Also a ValueError, which bad arrays raised before it existed."""


class GenerationError(LstmVerifyError, RuntimeError):
    """lstm-verify could not build a test case (or a reference value) itself: a fault of the
    tool or of the spec, never of the implementation under test."""


class SaturationError(GenerationError, ValueError):
    """No finite bias saturates every gate of a cell on the drawn inputs (an unbounded function
    such as exp or relu feeds back into a gate): a case the saturated regimes cannot build."""


class MissingExtraError(LstmVerifyError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra that brings it (``pip install 'lstm-verify[torch]'``)."""
