import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_generated_from_the_current_help():
    # docs/cli.md is what `--help` prints; regenerate with: python scripts/gen_cli_docs.py
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"], capture_output=True)
    assert p.returncode == 0, "docs/cli.md is stale: run python scripts/gen_cli_docs.py"


def test_the_model_card_says_what_its_saved_runs_say():
    # the card ships in the wheel; it is written from the reports in docs/results and benchmarks/results
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "model_card.py"), "--check"], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr


def test_every_command_has_help_and_a_bad_flag_is_a_usage_error():
    from click.testing import CliRunner

    from edgeser.cli import COMMANDS, cli

    for name in COMMANDS:
        res = CliRunner().invoke(cli, [name, "--help"])
        assert res.exit_code == 0 and "Usage:" in res.output, name
        bad = CliRunner().invoke(cli, [name, "--no-such-flag"])
        assert bad.exit_code == 2 and "No such option" in bad.output, name


def _options(cmd, path=()):
    """(command path, option) for every option of a command and of its subcommands."""
    import click

    for p in cmd.params:
        if isinstance(p, click.Option):
            yield path, p
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _options(sub, (*path, name))


def test_every_number_option_refuses_nan_and_inf():
    # nan passes every bound of click.FloatRange (nan < 0 is false): `listen --gain nan` answered
    # "sadness 0.95" for an angry clip; each float option is an edgeser.options.FiniteRange
    import click
    from click.testing import CliRunner

    from edgeser.cli import COMMANDS, cli
    from edgeser.options import FiniteRange

    floats = []
    for name in COMMANDS:
        for path, opt in _options(cli.get_command(None, name), (name,)):
            if isinstance(opt.type, click.types.FloatParamType):
                assert isinstance(opt.type, FiniteRange), f"edgeser {' '.join(path)} {opt.opts[0]}: {opt.type!r}"
                floats.append((path, opt.opts[0]))
    assert len(floats) >= 20, floats
    for path, flag in [(("listen",), "--gain"), (("train",), "--lr")]:
        res = CliRunner().invoke(cli, [*path, flag, "nan"])
        assert res.exit_code == 2 and f"Invalid value for '{flag}': 'nan' is not a finite number" in res.output


def test_options_in_seconds_say_so_in_their_name():
    # units in option names (--hop-s, --prior-s, --mic-s): --duration and --timeout were the two
    # without; their old names stay as aliases for scripts
    from edgeser.cli import COMMANDS, cli

    seconds = [(path, opt) for name in COMMANDS for path, opt in _options(cli.get_command(None, name), (name,))
               if opt.metavar == "S" or "seconds" in (opt.help or "").lower().split(".")[0].split(" ")[:4]]
    unnamed = [(path, opt.opts) for path, opt in seconds if not any(o.endswith(("-s", "-ms")) for o in opt.opts)]
    assert len(seconds) >= 6 and unnamed == []


def test_the_microphone_is_mic_device_in_every_command_that_opens_one():
    # bridge called it --mic-device and listen, record and doctor --device (which train and evaluate
    # use for the torch device): --mic-device now works in all four, --device stays for scripts
    from click.testing import CliRunner

    from edgeser.cli import COMMANDS, cli

    mic = {path: opt.opts for name in COMMANDS for path, opt in _options(cli.get_command(None, name), (name,))
           if opt.name in ("device", "mic_device") and "microphone" in (opt.help or "") + " ".join(opt.opts)}
    assert set(mic) == {("listen",), ("record",), ("doctor",), ("bridge",)}, mic
    assert all("--mic-device" in opts for opts in mic.values()), mic
    res = CliRunner().invoke(cli, ["listen", "--mic-device", "0", "--input", "x.wav"])
    assert res.exit_code == 2 and "--input" in res.output      # taken as the microphone: refused beside a file
