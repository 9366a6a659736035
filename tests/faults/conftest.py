"""The fault tests reuse the transport tests' PKI builder (``tests/transport/transport_pki.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "transport"))
