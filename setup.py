"""Builds what pyproject.toml cannot declare: py_nodes' C codec, which is optional, and
the compiled sidecar with its docs chunks, which the wheel ships as houseparty/_sidecar
so that ``houseparty up`` runs from a pip install on a machine with Erlang/OTP."""

import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SIDECAR_SCRIPT = ROOT / "erlang_sidecar" / "package.escript"


def _warn(message: str) -> None:
    bar = "=" * 78
    print(f"\n{bar}\nWARNING (houseparty): {message}\n{bar}\n", file=sys.stderr)


class BuildPyWithSidecar(build_py):
    """build_py, then the sidecar's beams and docs chunks into houseparty/_sidecar."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # a checkout runs rebar3's build (scripts/setup.sh)
        out = Path(self.build_lib) / "houseparty" / "_sidecar"
        escript = shutil.which("escript")
        if escript is None:
            # The package still works as a client of a cluster; only `houseparty up`
            # needs the sidecar, and it says how to get one.
            _warn(
                "escript (Erlang/OTP) is not on PATH: this build ships NO compiled sidecar, "
                "so `houseparty up` will not run from it. Install Erlang/OTP 25 or newer "
                "and build again, or point HP_SIDECAR_EBIN at a compiled sidecar's ebin."
            )
            return
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([escript, str(SIDECAR_SCRIPT), "app", str(out)], check=True)


setup(
    cmdclass={"build_py": BuildPyWithSidecar},
    ext_modules=[
        Extension(
            "py_nodes._ccodec",
            sources=["py_nodes/_ccodec.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            # Without a C compiler the build goes on and py_nodes runs on its pure-Python
            # codec (py_nodes._codec.ACCELERATED is then False).
            optional=True,
        )
    ],
)
