"""Builds the fused search kernel (``vfs.similarity.kernel._scan``) when the package is installed.

Everything else is in pyproject.toml. One build runs on any CPU of its architecture: the scan is
compiled once per instruction set, each object with its own flags (never ``-march=native``), and
the module picks one at run time by CPU feature detection (see vfs/similarity/kernel/__init__.py).
The extension is optional: without a working C compiler the install still succeeds and search
runs on the PyTorch path.
"""

from __future__ import annotations

import os
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

KERNEL = "vfs/similarity/kernel"
X86 = any(tag in sysconfig.get_platform().lower() for tag in ("x86_64", "amd64"))
UNIX_FLAGS = ["-O3", "-std=c99", "-fno-math-errno", "-fPIC"]
#: per instruction set: (source, extra flags on x86-64 with GCC/clang); NEON and scalar need none
ISA_SOURCES = [
    ("scan_avx512.c", ["-mavx512f", "-mavx512bw", "-mavx2", "-mfma", "-mf16c"] if X86 else []),
    ("scan_avx2.c", ["-mavx2", "-mfma", "-mf16c"] if X86 else []),
    ("scan_neon.c", []),
    ("scan_scalar.c", []),
]
HEADERS = [f"{KERNEL}/isa.h", f"{KERNEL}/scan.h"]


class BuildKernel(build_ext):
    """Compiles each ISA's object with its own flags, then links them into the module."""

    def build_extension(self, ext: Extension) -> None:
        if ext.name == "vfs.similarity.kernel._scan" and os.environ.get("VFS_BUILD_KERNEL", "1") != "0":
            objects = []
            msvc = self.compiler.compiler_type == "msvc"
            for source, flags in ISA_SOURCES:
                if msvc:  # GNU vector extensions and -m flags: GCC or clang only
                    raise CompileError("the fused kernel needs GCC or clang")
                objects += self.compiler.compile([f"{KERNEL}/{source}"], output_dir=self.build_temp,
                                                 extra_postargs=UNIX_FLAGS + flags, depends=HEADERS,
                                                 debug=self.debug)
            ext.extra_objects = objects
        elif ext.name == "vfs.similarity.kernel._scan":
            raise CompileError("VFS_BUILD_KERNEL=0: the fused kernel is not built")
        super().build_extension(ext)


setup(
    ext_modules=[Extension("vfs.similarity.kernel._scan", [f"{KERNEL}/module.c"], depends=HEADERS,
                           extra_compile_args=["-O2"], libraries=["m"], optional=True)],
    cmdclass={"build_ext": BuildKernel},
)
