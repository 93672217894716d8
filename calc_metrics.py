"""Compute quality metrics (FID, KID, precision/recall, PPL, IS) of a snapshot, or of every snapshot of a run.

`python calc_metrics.py --help` lists the options. The command lives in commands/calc_metrics_command.py.
"""

from commands.calc_metrics_command import main

if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
