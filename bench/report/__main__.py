"""``python -m bench.report RESULTS_DIR... [--out DIR]``."""

from bench.report.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
