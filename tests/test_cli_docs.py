import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_generated_from_the_current_help():
    # docs/cli.md is what `--help` prints; regenerate with: python scripts/gen_cli_docs.py
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"], capture_output=True)
    assert p.returncode == 0, "docs/cli.md is stale: run python scripts/gen_cli_docs.py"


def test_every_command_has_help_and_a_bad_flag_is_a_usage_error():
    from click.testing import CliRunner

    from edgeser.cli import COMMANDS, cli

    for name in COMMANDS:
        res = CliRunner().invoke(cli, [name, "--help"])
        assert res.exit_code == 0 and "Usage:" in res.output, name
        bad = CliRunner().invoke(cli, [name, "--no-such-flag"])
        assert bad.exit_code == 2 and "No such option" in bad.output, name
