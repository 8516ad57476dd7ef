"""Promotion: notebook cells marked `#| promote: MODULE` become `tinyllm_lab/MODULE.py`.

The notebook is the one source of truth. A day's notebook builds a function inline in a cell
whose first line is `#| promote: ops`; running this module copies every such cell, in notebook
order, into `tinyllm_lab/ops.py` under a header that says where it came from:

    python -m tinyllm_lab.promote           # (re)write every promoted module
    python -m tinyllm_lab.promote day2_rope.ipynb   # only the modules of these notebooks
    python -m tinyllm_lab.promote --check   # exit 1 if a notebook and its module differ

The check compares code, not formatting: both sides are parsed with `ast` and compared as
syntax trees, so comments, blank lines and spacing may differ, a changed name or number may not.

The lab's learner promotion (`tinyllm_lab.lab.workspace.promote_day`) reuses `promoted_cells`,
`render` (with its own header) and `owners` (on another folder of notebooks) to write a
learner's cells into their own package instead.
"""

import argparse
import ast
import json
import sys
from pathlib import Path

MARKER = "#| promote:"
PACKAGE_DIR = Path(__file__).resolve().parent
NOTEBOOK_DIR = PACKAGE_DIR.parent / "notebooks"
HEADER = "# Promoted from notebooks/{notebook} by `python -m tinyllm_lab.promote`.\n" \
         "# Do not edit here: edit the notebook's `{marker} {module}` cells and promote again.\n\n"


def promoted_cells(notebook):
    """The marked cells of one notebook, by module: {module: [source, ...]} in cell order."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    modules = {}
    for cell in cells:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        first, _, body = source.partition("\n")
        if cell["cell_type"] == "code" and first.startswith(MARKER):
            module = first[len(MARKER):].strip()
            if not module.isidentifier():
                raise ValueError(f"{notebook}: bad module name {module!r} after {MARKER!r}")
            modules.setdefault(module, []).append(body.strip("\n"))
    return modules


def render(notebook, module, sources, header=None):
    """The text of `tinyllm_lab/<module>.py`: the header, then the cells, two blank lines apart.

    `header`: a format string with the fields {notebook}, {marker} and {module} (default HEADER).
    """
    header = (HEADER if header is None else header).format(notebook=Path(notebook).name, marker=MARKER, module=module)
    return header + "\n\n\n".join(sources) + "\n"


def same_code(a, b):
    """True when two sources parse to the same syntax tree (formatting and comments ignored)."""
    return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))


def notebooks(notebook_dir=None):
    return sorted(Path(NOTEBOOK_DIR if notebook_dir is None else notebook_dir).glob("*.ipynb"))


def owners(notebook_dir=None):
    """{module: notebook} for every promoted module; a module promoted from two notebooks is an error.

    `notebook_dir`: the course's notebooks/ by default (NOTEBOOK_DIR, read at each call).
    """
    owner = {}
    for nb in notebooks(notebook_dir):
        for module in promoted_cells(nb):
            if module in owner:
                raise ValueError(f"module {module!r} is promoted from both {owner[module].name} and {nb.name}")
            owner[module] = nb
    return owner


def compare(notebook):
    """One line per module this notebook promotes: whether `tinyllm_lab/<module>.py` matches its cells."""
    nb = NOTEBOOK_DIR / Path(notebook).name
    lines = []
    for module, sources in promoted_cells(nb).items():
        path = PACKAGE_DIR / f"{module}.py"
        if not path.exists():
            lines.append(f"tinyllm_lab/{module}.py is missing (promoted from {nb.name})")
        elif not same_code(path.read_text(encoding="utf-8"), render(nb, module, sources)):
            lines.append(f"tinyllm_lab/{module}.py differs from its cells in {nb.name}")
        else:
            lines.append(f"tinyllm_lab/{module}.py matches its {len(sources)} cells in {nb.name}")
    return lines


def check():
    """A list of problems, one line each: modules that differ from (or are missing for) their notebook."""
    problems = [line for nb in notebooks() for line in compare(nb) if " matches " not in line]
    promoted = owners()
    for path in sorted(PACKAGE_DIR.glob("*.py")):  # generated files whose cells were removed
        if path.read_text(encoding="utf-8").startswith("# Promoted from") and path.stem not in promoted:
            problems.append(f"{path.name} says it is promoted, but no notebook has `{MARKER} {path.stem}` cells")
    return problems


def write(only=()):
    """Write every promoted module (or those of the notebooks named in `only`); returns the modules written."""
    written = []
    for module, nb in owners().items():
        if only and nb.name not in {Path(name).name for name in only}:
            continue
        (PACKAGE_DIR / f"{module}.py").write_text(render(nb, module, promoted_cells(nb)[module]), encoding="utf-8")
        written.append(f"tinyllm_lab/{module}.py <- notebooks/{nb.name}")
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyllm_lab.promote", description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="promote only these notebooks' modules (default: all)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if anything differs")
    args = parser.parse_args(argv)
    if not args.check and any((folder / ".lab.json").is_file() for folder in (Path.cwd(), *Path.cwd().parents)):
        # a lab workspace: this command would promote the course's notebooks/ into tinyllm_lab/, not yours
        print("python -m tinyllm_lab.promote: error: this is the lab's workspace: this command promotes the course's "
              "notebooks (notebooks/) into tinyllm_lab/, not your exercise notebooks. Promote yours into my_tinyllm/ "
              "with `python -m tinyllm_lab.lab promote dayN` (or the promotion cell at the end of the notebook).",
              file=sys.stderr)
        return 2
    if args.check:
        problems = check()
        print("\n".join(problems) if problems else "every promoted module matches its notebook")
        return 1 if problems else 0
    unknown = [n for n in args.notebooks if not (NOTEBOOK_DIR / Path(n).name).exists()]
    if unknown:
        parser.error(f"no such notebook in notebooks/: {', '.join(unknown)}")
    print("\n".join(write(args.notebooks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
