"""Build hook: metadata lives in pyproject.toml; this only declares the cffi extension."""

from setuptools import setup

setup(cffi_modules=["qtoolkit/_build.py:ffibuilder"])
