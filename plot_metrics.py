"""Plot a metric against training time (or kimg) for one or more training runs on one PNG.

`python plot_metrics.py --help` lists the options. The command lives in commands/plot_metrics_command.py.
"""

from commands.plot_metrics_command import main

if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
