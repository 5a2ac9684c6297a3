import sys

from vaecodec.cli import main

sys.exit(main())
