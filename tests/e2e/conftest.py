import logging

import pytest


@pytest.fixture(autouse=True)
def _quiet_plain_warning(caplog):
    caplog.set_level(logging.ERROR, logger="securefl")
