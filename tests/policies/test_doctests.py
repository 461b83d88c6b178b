"""The usage examples in the policies modules' docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["policies", "policies.spec", "policies.engine", "policies.promql",
                                    "policies.text", "policies.model", "policies.errors"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
