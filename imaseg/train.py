import sys

from imaseg.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
