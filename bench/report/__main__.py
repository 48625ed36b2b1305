"""``python -m bench.report RESULTS_DIR... [--out DIR]``: ``python -m bench report``."""

from bench.cli.report import main

if __name__ == "__main__":
    raise SystemExit(main())
