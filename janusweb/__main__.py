import sys

from janusweb.cli import main

sys.exit(main())
