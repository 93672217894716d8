"""The root scripts' command lines: their parsers, checks and the processes they start.

A floor above metrics/ and training/ (a command wires both together), below the thin scripts at the root, so that
one script's command can be reused by another (compare.py runs train.py's parser on every planned run) without
a script importing a script.
"""
