"""Builds the optional native fast paths (dyntel/_speedups.c, dyntel/_prefilter.c, dyntel/_eventheader.c). Everything else is in
pyproject.toml.

The extensions are optional: where no C compiler is present the install still succeeds and dyntel uses its pure
Python decoder, which gives the same output more slowly.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dyntel._speedups",
            # EventHeader samples are written by dyntel/_eventheader.c, compiled in (without its own module init).
            sources=["dyntel/_speedups.c", "dyntel/_eventheader.c"],
            depends=["dyntel/_perf_record.h", "dyntel/_eventheader.h"],
            define_macros=[("DYNTEL_EVENTHEADER_NO_MODULE", "1")],
            optional=True,
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        ),
        # The replay's pre-filter over perf.data samples; optional in the same way.
        Extension(
            "dyntel._prefilter",
            sources=["dyntel/_prefilter.c"],
            depends=["dyntel/_perf_record.h"],
            optional=True,
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        ),
        # The EventHeader payload decoder for replay and live (values, as the Python decoder gives them); optional
        # in the same way.
        Extension(
            "dyntel._eventheader",
            sources=["dyntel/_eventheader.c"],
            depends=["dyntel/_eventheader.h"],
            optional=True,
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        ),
    ]
)
