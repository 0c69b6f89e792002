"""`make bench`: every benchmark, each printing its figures beside a baseline from the same run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import c2c_upload, close_upload, concurrency, health, rate_limit

if __name__ == "__main__":
    health.main()
    print()
    c2c_upload.main()
    print()
    close_upload.main()
    print()
    missed = rate_limit.main()
    print()
    raise SystemExit(concurrency.main() or missed)
