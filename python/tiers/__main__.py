"""`python -m tiers ARGS`: run the `tiers` executable with ARGS."""

import os
import subprocess
import sys

from tiers._find import find_tiers_bin


def main() -> None:
    tiers = find_tiers_bin()
    if sys.platform == "win32":
        sys.exit(subprocess.call([tiers, *sys.argv[1:]]))
    os.execv(tiers, [tiers, *sys.argv[1:]])


if __name__ == "__main__":
    main()
