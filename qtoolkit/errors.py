"""qtoolkit's exceptions: one base class, and subclasses that are also the matching builtins,
so ``except ValueError`` and ``except QtkError`` both work."""


class QtkError(Exception):
    """Base class of every error qtoolkit raises on purpose."""


class QtkValueError(QtkError, ValueError):
    """An argument or an input value is wrong (shape, dtype, NaN/Inf, unknown name...)."""


class QtkImatrixRequiredError(QtkValueError):
    """The quantization type needs an importance matrix (imatrix) and none was given.

    ggml defines IQ2_XXS, IQ2_XS and IQ1_S only with importance weights. ``qtype`` is the type's
    name (e.g. ``"IQ2_XXS"``); callers that know the tensor catch this to name it."""

    def __init__(self, message: str, qtype: str = ""):
        super().__init__(message)
        self.qtype = qtype


class QtkImatrixCoverageError(QtkValueError):
    """An importance matrix leaves experts without data (fewer calibration tokens than the
    threshold) and the chosen policy is to refuse. ``uncovered`` maps each tensor name to its
    expert ids."""

    def __init__(self, message: str, uncovered=None):
        super().__init__(message)
        self.uncovered = dict(uncovered or {})


class QtkTypeError(QtkError, TypeError):
    """An argument has the wrong Python type."""


class QtkFormatError(QtkValueError):
    """A file's contents are corrupt, truncated or inconsistent."""


class QtkMemoryError(QtkError, MemoryError):
    """An allocation failed."""


class QtkNotImplementedError(QtkError, NotImplementedError):
    """A valid request that this version does not support (yet)."""


class QtkFileExistsError(QtkError, FileExistsError):
    """The output exists and --force / force=True was not given."""


class QtkFileNotFoundError(QtkError, FileNotFoundError):
    """An input file or directory is missing."""
