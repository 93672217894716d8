"""Project a target image into the W space of one or more generators (StyleGAN2-ADA's projector.py).

`python projector.py --help` lists the options. The command lives in commands/projector_command.py.
"""

from commands.projector_command import main

if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
