"""The ``multitype`` command: a thin Typer layer over the library.

Each command group lives in its own module; this one wires them together and
maps exceptions to exit codes (DESIGN.md section 2): ``UserError`` -> one
``error: ...`` line and exit 2, an answered SIGTERM -> 143, anything else -> 1
with a traceback. ``--debug`` (anywhere a flag can stand, or ``MULTITYPE_DEBUG=1``)
adds the traceback and keeps the exit code.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer
import typer.main

from multitype.cli import (autoscale, cost, doctor, ec2, export, iam, pipeline, registry, sagemaker, serve, sync, train,
                           tune)
from multitype.errors import Interrupted, UserError

app = typer.Typer(
    name="multitype",
    help="Text classification from a laptop to AWS and back: one config, one artifact layout.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
pipeline.register(app)
app.add_typer(train.app, name="train")
app.add_typer(tune.app, name="tune")
app.add_typer(sync.app, name="sync")
app.add_typer(sagemaker.app, name="sagemaker")
app.add_typer(ec2.app, name="ec2")
app.add_typer(cost.app, name="cost")
app.add_typer(iam.app, name="iam")
app.add_typer(autoscale.app, name="autoscale")
app.add_typer(export.app, name="export")
app.add_typer(registry.app, name="registry")
doctor.register(app)
serve.register(app)


def split_debug_flag(args: list[str]) -> tuple[list[str], bool]:
    """``args`` without each ``--debug`` that stands as a flag, and whether one did.

    A ``--debug`` that is the value of an option (``--input --debug``: a file
    named ``--debug``) or comes after ``--`` is an argument and stays. The
    options of each (sub)command are read from the click command Typer builds,
    so this knows which options take a value.
    """
    command = typer.main.get_command(app)
    out: list[str] = []
    debug = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        if arg == "--debug":
            debug = True
            i += 1
            continue
        out.append(arg)
        i += 1
        if arg.startswith("-") and "=" not in arg:
            option = next((p for p in getattr(command, "params", [])
                           if arg in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))), None)
            if option is not None and not getattr(option, "is_flag", False) and not getattr(option, "count", False):
                taken = max(1, option.nargs)
                out.extend(args[i:i + taken])
                i += taken
        elif not arg.startswith("-"):
            command = (getattr(command, "commands", None) or {}).get(arg, command)
    return out, debug


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    args, debug = split_debug_flag(list(sys.argv[1:] if argv is None else argv))
    debug = debug or os.environ.get("MULTITYPE_DEBUG") == "1"
    try:
        rc = app(args=args, prog_name="multitype", standalone_mode=False)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return Interrupted.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return 1
    except Exception as exc:
        # Typer's (vendored) click usage errors: bad option, missing value, ...
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        message = " ".join(exc.format_message().split())
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print(f"error: {message}{hint}", file=sys.stderr)
        return 2 if exc.exit_code in (None, 1, 2) else exc.exit_code
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
