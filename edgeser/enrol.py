"""`edgeser enrol`: one user's class balance from unlabelled recordings, on the device itself."""
from __future__ import annotations

import os

import click

from .balance import PRIOR_S
from .options import FiniteRange, Output, denoise_option, model_options, speeds_option, vad_config, vad_options


@click.command("enrol")
@click.argument("recordings", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=Output(), metavar="FILE",
              help="The balance file to write (JSON); then `edgeser listen --balance FILE`.")
@model_options
@vad_options
@denoise_option
@speeds_option
@click.option("--prior-s", type=FiniteRange(min=0), default=PRIOR_S, show_default=True, metavar="S",
              help="Seconds of speech an even answer is worth beside the measured one: the balance moves "
                   "answers less the less speech it rests on. For enrolment on under about 15 s of speech "
                   "(10 is a good value); 0 trusts the measurement fully, best with more speech.")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON object on stdout: {"out", "balance": what the file holds, "skipped": '
                   '[{"file", "error"}] of unreadable files, "notes"}; progress stays on stderr.')
def enrol(recordings, out, model, backend, precision, threads, vad_mode, vad_gain_db, vad_noise_margin_db, denoise,
          speeds, prior_s, as_json):
    """Balance the model's answers for one user's voice, without labels and without torch.

    RECORDINGS are audio files or folders of them (a folder with a manifest.csv: its `path`
    column): a few minutes of the user speaking across the emotions, as mixed as their days are.
    The model's mean answer over that speech becomes the balance file; `listen --balance FILE`
    then divides every answer by it (to the power --balance-strength, 0.75 by default), so that
    no emotion dominates that voice. Recordings of
    mostly one emotion teach it to distrust that emotion: enrol on mixed speech.
    """
    from .audio import AudioError, audio_paths
    from .balance import BalanceError, saved, speech_said, write
    from .runtime.recognizer import RecognizerError, load
    from .vad import VadUnavailable

    if as_json:
        from . import jsonend

        jsonend.owe("enrol", out=os.path.abspath(out))
    try:
        files = audio_paths(recordings)
        rec = load(model, backend=backend, precision=precision, threads=threads)
        for note in rec.notes:
            click.echo(f"note: {note}", err=True)
        bal, skipped = rec.enrol(files, progress=True, prior_s=prior_s, vad=vad_config(vad_mode, vad_gain_db, vad_noise_margin_db),
                                 speeds=speeds, denoise=denoise)
        for gone in skipped:
            click.echo(f"skipped: {gone['file']}: {gone['error']}", err=True)
        write(bal, out)
    except (AudioError, BalanceError, RecognizerError, VadUnavailable, OSError) as e:
        raise click.ClickException(str(e))
    notes = [n for n in [bal.short_note()] if n]
    notes += [f"note: the model rarely heard {lab} in these recordings and the balance lifts it {lift:.0f}-fold: right "
              f"if they hold some {lab}, wrong if they hold none (then enrol on recordings that do)."
              for lab, lift in bal.rare()]
    notes += bal.dominant_notes()
    if as_json:
        from .files import result_line

        click.echo(result_line("enrol", {"out": os.path.abspath(out), "balance": saved(bal), "skipped": list(skipped),
                               "notes": [n.removeprefix("note: ") for n in notes]}))
    else:
        top = sorted(zip(bal.mean, bal.labels), reverse=True)
        click.echo(f"enrolled on {bal.utterances} utterance(s) ({speech_said(bal.seconds)} of speech"
                   + (f", {len(skipped)} unreadable files skipped" if skipped else "") + f") with {rec.format} "
                   f"{rec.precision}; the model's mean answer: " + ", ".join(f"{lab} {p:.0%}" for p, lab in top)
                   + f"; balance file {out}")
    for note in notes:
        click.echo(note, err=True)
