import sys

from multitype.cli import main

sys.exit(main())
