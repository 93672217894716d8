"""Compare training objectives: the same train.py runs for several variants and seeds, and a report with intervals.

`python compare.py --help` lists the options with examples. The study lives in study/ (read top to bottom:
folder, plan, runner, report, pictures; the command line in study/command.py).
"""

from study.command import cli

if __name__ == "__main__":
    cli()  # pylint: disable=no-value-for-parameter
