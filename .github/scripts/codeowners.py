"""Set the owners of every rule in .github/CODEOWNERS (comments and paths stay as they are).

python .github/scripts/codeowners.py                      # @<owner> of the origin remote
python .github/scripts/codeowners.py @my-org/reviewers @alice
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CODEOWNERS = Path(".github/CODEOWNERS")
OWNER = re.compile(r"^@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:/[A-Za-z0-9._-]+)?$")
ORIGIN = re.compile(r"github\.com[:/]([A-Za-z0-9-]+)/")


def origin_owner() -> str:
    """The user or organization that owns the `origin` remote on GitHub."""
    url = subprocess.run(
        ["git", "remote", "get-url", "origin"], capture_output=True, text=True, check=False
    ).stdout.strip()
    found = ORIGIN.search(url)
    if found is None:
        sys.exit(f"error: origin remote {url or '(none)'} is not on GitHub; name the owners")
    return f"@{found.group(1)}"


def with_owners(text: str, owners: list[str]) -> str:
    """``text`` with each rule's owners replaced by ``owners``."""
    lines = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            line = " ".join([line.split()[0], *owners])
        lines.append(line)
    return "\n".join(lines) + "\n"


def main() -> None:
    owners = sys.argv[1:] or [origin_owner()]
    wrong = [owner for owner in owners if not OWNER.match(owner)]
    if wrong:
        sys.exit(f"error: not a GitHub user or team (@name or @org/team): {', '.join(wrong)}")
    CODEOWNERS.write_text(with_owners(CODEOWNERS.read_text(encoding="utf-8"), owners), "utf-8")
    print(f"{CODEOWNERS}: every rule owned by {' '.join(owners)}")


if __name__ == "__main__":
    main()
