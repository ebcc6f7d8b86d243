import sys

from imaseg.cli import main

sys.exit(main())
