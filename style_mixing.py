"""Style mixing: the w of each row seed with some of its layers taken from each column seed (StyleGAN2-ADA's.

`python style_mixing.py --help` lists the options. The command lives in commands/style_mixing_command.py.
"""

from commands.style_mixing_command import main

if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
