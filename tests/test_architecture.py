"""The layering, enforced (issue 14): the import-linter contracts of pyproject.toml ([tool.importlinter])
hold — relay's layers from model up to cli, the core never importing Flask or Celery, webhooks and
workers never importing each other. Run by hand with `lint-imports`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint_imports), "--no-cache", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"import-linter contracts broken:\n{done.stdout}\n{done.stderr}"
