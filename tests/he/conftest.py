"""Contexts are slow-ish to make; share one per preset across the he tests."""

from __future__ import annotations

import pytest

from securefl.he import BFV_N4096, CKKS_N4096, CKKS_N8192, SecretContext


@pytest.fixture(scope="session")
def bfv_secret() -> SecretContext:
    return SecretContext.generate(BFV_N4096, clip=0.1)


@pytest.fixture(scope="session")
def ckks_secret() -> SecretContext:
    return SecretContext.generate(CKKS_N4096)


@pytest.fixture(scope="session")
def ckks8192_secret() -> SecretContext:
    return SecretContext.generate(CKKS_N8192)
