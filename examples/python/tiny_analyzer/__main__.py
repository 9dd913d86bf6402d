import sys

from tiny_analyzer import main

sys.exit(main())
