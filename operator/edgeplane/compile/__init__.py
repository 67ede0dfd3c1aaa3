"""Worker spec + resolved sources -> one immutable Bundle (pure; no I/O)."""

from edgeplane.compile.compiler import (
    MAX_COMPRESSED,
    MAX_UNCOMPRESSED,
    CompileError,
    Sources,
    assemble,
    compile_version,
    compile_worker,
    references,
)

__all__ = [
    "MAX_COMPRESSED",
    "MAX_UNCOMPRESSED",
    "CompileError",
    "Sources",
    "assemble",
    "compile_version",
    "compile_worker",
    "references",
]
