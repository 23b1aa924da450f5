"""Check for pending migrations (the strategy document's pre-commit hook), exit 1 when the database is behind.

Same code as `tradedb check`: unlike the original sketch, it compares revision ids (not printed output), works
with several heads reported clearly, and names what is pending. Target with --env or TRADEDB_ENV.
"""

import sys

from tradedb.cli.main import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "check", *sys.argv[1:]]
    main()
