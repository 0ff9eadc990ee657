"""What tests share: the running bot (harness), processes, databases, payloads and the
repository's own paths. Tests import from here (or get fixtures from conftest.py), never
from another test module."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
