"""The lab's command line: make the workspace, promote a day into your package, progress, reset.

    python -m tinyllm_lab.lab workspace                 # make or update workspace/ (never overwrites your edits)
    python -m tinyllm_lab.lab workspace --replace day3  # take the course's new day 3, yours kept as a backup
    python -m tinyllm_lab.lab promote day3              # your day 3 cells -> workspace/my_tinyllm/
    python -m tinyllm_lab.lab progress                  # every exercise: not started / failing / passing
    python -m tinyllm_lab.lab reset day3 repeat_kv      # one exercise back to its stub, yours kept aside

`make lab` runs `workspace`, then opens JupyterLab on workspace/.
"""

import argparse
import os
import sys

from tinyllm_lab.lab import workspace as ws


def _silence_stdout():  # what is still buffered can never be written: send it to /dev/null so exit cannot fail
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass


def _say(text):  # print and flush now, so a refusing stdout is noticed here (and not at exit)
    print(text)
    sys.stdout.flush()


def main(argv=None):  # -> exit status; never a traceback: `| head` ends quietly, a full disk in one line
    try:
        return _main(argv)
    except BrokenPipeError:  # e.g. `| head`: the reader left; stop quietly, like the engine's command line
        _silence_stdout()
        return 0
    except OSError as error:  # e.g. `> /dev/full`
        try:
            print(f"python -m tinyllm_lab.lab: error: cannot write the output: {error.strerror or error}",
                  file=sys.stderr, flush=True)
        except OSError:
            pass
        _silence_stdout()
        return 1
    except KeyboardInterrupt:
        return 130


def _main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyllm_lab.lab", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[2:]))
    parser.add_argument("--workspace", metavar="FOLDER", default=None,
                        help="the workspace folder (default: the repository's workspace/)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    make = commands.add_parser("workspace", help="make or update the workspace of exercise notebooks")
    make.add_argument("--replace", nargs="+", default=[], metavar="DAY",
                      help="replace these days' notebooks by the course's current version (yours are backed up first)")
    promote = commands.add_parser("promote", help="promote your cells of one day into workspace/my_tinyllm/")
    promote.add_argument("day", help="day1 .. day7, or the notebook's file name")
    commands.add_parser("progress", help="every exercise of days 1-7 (day 8 has none): not started / failing / passing")
    reset = commands.add_parser("reset", help="put one exercise back to its stub (your version is kept aside)")
    reset.add_argument("day", help="day1 .. day7, or the notebook's file name")
    reset.add_argument("name", help="the exercise, e.g. rms_norm")
    args = parser.parse_args(argv)

    workspace = ws.workspace_dir(args.workspace) if args.workspace else ws.DEFAULT_WORKSPACE
    try:
        if args.command == "workspace":
            _say(f"workspace: {workspace}")
            _say("\n".join(ws.make_workspace(workspace, replace=args.replace)))
        elif args.command == "promote":
            _say(ws.promote_day(args.day, workspace))
        elif args.command == "progress":
            from tinyllm_lab.lab.progress import progress
            _say(progress(workspace).report)
        elif args.command == "reset":
            _say(ws.reset(args.day, args.name, workspace))
    except (FileNotFoundError, ValueError) as error:
        print(f"python -m tinyllm_lab.lab {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
