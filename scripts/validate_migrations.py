"""Validate that all migrations can be applied and rolled back (the strategy document's script, done properly).

Same code as `tradedb validate`: every revision is upgraded, downgraded and re-upgraded on a scratch database
next to the target, with sample data in it, checking that no data is lost; the target itself is never touched.
"""

import sys

from tradedb.cli.main import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "validate", *sys.argv[1:]]
    main()
