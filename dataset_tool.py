"""Convert images into a training set: a zip (or folder) of PNGs in 00000/img00000000.png layout + dataset.json.

`python dataset_tool.py --help` lists the options. The command lives in commands/dataset_tool_command.py.
"""

from commands.dataset_tool_command import main

if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
