"""Studies: the same train.py runs for several variants and seeds, in one folder, and a report with intervals.

Read top to bottom: `folder` (the variant grammar, the manifest, where each run stands), `plan` (variants ->
checked train.py commands), `runner` (the jobs and the processes that run them), `report` (intervals, paired
differences, tables and curves), `pictures` (sample grids, projections, the report folder). compare.py is the
command line.
"""
