"""Generate images with a trained generator (our snapshot or an official StyleGAN2-ADA .pkl).

`python generate.py --help` lists the options. The command lives in commands/generate_command.py.
"""

from commands.generate_command import main

if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
