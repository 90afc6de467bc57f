"""Builds the optional native fast path (dyntel/_speedups.c). Everything else is in pyproject.toml.

The extension is optional: where no C compiler is present the install still succeeds and dyntel uses its pure
Python decoder, which gives the same output more slowly.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dyntel._speedups",
            sources=["dyntel/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        )
    ]
)
