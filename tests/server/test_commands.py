"""`dream serve` / `dream keys`: argparse registration, key lifecycle, no heavy imports."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from dream.server import commands
from tests.server.conftest import REPO


def run_cli(*argv: str, capsys) -> tuple[int, str, str]:
    code = commands.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_register_adds_serve_and_keys_to_a_parser() -> None:
    parser = argparse.ArgumentParser(prog="dream")
    sub = parser.add_subparsers(dest="command")
    commands.register(sub)
    args = parser.parse_args(["serve", "--spec", "a", "--spec", "b", "--port", "9000", "--no-auth", "--batch-window-ms", "0"])
    assert args.spec == ["a", "b"] and args.port == 9000 and args.no_auth and args.batch_window_ms == 0
    assert args.func is commands.cmd_serve and args.host == "127.0.0.1"
    args = parser.parse_args(["keys", "create", "--customer", "acme", "--credits", "2.5"])
    assert args.func is commands.cmd_keys_create and args.credits == 2.5


def test_help_texts(capsys) -> None:
    for argv in (["serve", "--help"], ["keys", "--help"], ["keys", "create", "--help"]):
        with pytest.raises(SystemExit) as ei:
            commands.main(argv)
        assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "--batch-window-ms" in out and "LOCAL DEVELOPMENT ONLY" in out and "dream keys create --customer" in out


def test_key_lifecycle(tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    code, out, _ = run_cli("keys", "create", "--customer", "acme", "--credits", "2.5", "--db", db, capsys=capsys)
    key = out.strip().splitlines()[-1]
    assert code == 0 and key.startswith("dre_") and key == key.strip() and " " not in key
    assert "25000 mils" in out
    code, out, _ = run_cli("keys", "create", "--customer", "acme", "--rate-limit", "2", "--db", db, capsys=capsys)
    second = out.strip().splitlines()[-1]
    code, out, _ = run_cli("keys", "list", "--db", db, capsys=capsys)
    assert code == 0 and out.count("acme") == 2 and "2.5000" in out and key not in out
    code, out, _ = run_cli("keys", "credit", "--customer", "acme", "--credits", "1", "--db", db, capsys=capsys)
    assert code == 0 and "35000 mils" in out
    code, out, _ = run_cli("keys", "revoke", second[:12], "--db", db, capsys=capsys)
    assert code == 0 and out.startswith("revoked key_")
    code, _, err = run_cli("keys", "revoke", "key_nope", "--db", db, capsys=capsys)
    assert code == 1 and "no key matches" in err
    from dream.errors import AuthError
    from dream.server.services.db import Database
    from dream.server.services.ledger import Ledger

    ledger = Ledger(Database(db))
    assert ledger.authenticate(key).customer_name == "acme"
    with pytest.raises(AuthError):
        ledger.authenticate(second)
    assert ledger.list_keys()[1]["rate_limit_rps"] == 2.0
    with pytest.raises(SystemExit, match="non-negative"):
        commands.main(["keys", "create", "--customer", "x", "--credits", "-1", "--db", db])


def test_db_accepts_a_plain_sqlite_path(tmp_path, capsys) -> None:
    code, _out, _ = run_cli("keys", "create", "--customer", "p", "--db", str(tmp_path / "ledger.db"), capsys=capsys)
    assert code == 0 and (tmp_path / "ledger.db").is_file()
    assert commands.db_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_serve_refuses_an_unknown_spec(tmp_path, capsys) -> None:
    code, _, err = run_cli("serve", "--spec", "no-such-spec", "--db", f"sqlite:///{tmp_path / 'l.db'}", capsys=capsys)
    assert code == 2 and "no-such-spec" in err


def test_importing_the_commands_loads_nothing_heavy() -> None:
    code = (
        "import sys, dream.server.commands; "
        "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'torch', 'numpy', 'httpx', 'stripe') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"
