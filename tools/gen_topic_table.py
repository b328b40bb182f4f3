"""Write docs/topics.md's topic table from the registry (shared/syi_shared/topics.py).

    .venv/bin/python tools/gen_topic_table.py            # rewrite the table between its markers
    .venv/bin/python tools/gen_topic_table.py --check    # exit 1 when the doc differs

The table (who writes and who reads each topic, and which services read a store's tables) is
generated, never edited by hand: tests/shared/test_topic_map.py fails when it is out of date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from syi_shared.topics import replace_table

DOC = Path(__file__).resolve().parents[1] / "docs" / "topics.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when docs/topics.md is out of date")
    args = parser.parse_args()
    text = DOC.read_text()
    generated = replace_table(text)
    if generated == text:
        return 0
    if args.check:
        print(f"{DOC} is out of date: run python tools/gen_topic_table.py", file=sys.stderr)
        return 1
    DOC.write_text(generated)
    print(f"wrote the topic table into {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
