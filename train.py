"""Train a StyleGAN2(-ADA) generator with the CE or a rooted logistic (RLO) adversarial loss.

`python train.py --help` lists the flags with examples. The command lives in commands/train_command.py (its parser,
run directory and processes) and commands/train_flags.py (the flags' defaults, checks and replay on resume).
"""

from commands.train_command import main

if __name__ == "__main__":
    main()
