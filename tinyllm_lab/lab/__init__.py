"""The lab: the learner writes the engine, and the course tells them what they got wrong.

- `check(fn)`: runs a learner's function (or class) against the reference of the same name on
  cases chosen to catch real mistakes, and names the mistake when the output matches one from
  the catalogue (`tinyllm_lab.lab.exercises_day1` ... `exercises_day7`).
- `trace(...)`: finds the first wrong tensor in a learner's assembled model.
- `progress()`: every exercise of days 1-7 (day 8 has none): not started / failing / passing.
- `python -m tinyllm_lab.lab ...`: make the workspace of exercise notebooks, promote a learner's
  day into their own package, show progress.

The exercises themselves are listed in `tinyllm_lab.lab.syllabus`.
"""

from tinyllm_lab.lab.check import check
from tinyllm_lab.lab.progress import progress
from tinyllm_lab.lab.trace import trace
