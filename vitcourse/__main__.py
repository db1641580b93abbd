import sys

from vitcourse.cli import main

sys.exit(main())
