"""Today's standing of the attack suite, as a table: ``python tests/sandbox/attacks/report_table.py JUNIT.xml``.

Reads the JUnit XML of a run of ``tests/sandbox/attacks`` (``pytest --junitxml=JUNIT.xml``): a case that
xfailed is one today's sandbox got wrong (forged, or scored infra, or hung: the reason says which), a
case that passed is one it got right. Prints, per family, backend and runner, wrong/total, and how many
attacks are wrong somewhere (the measure of issue 18's "33 of 41").
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

COLUMNS = [("process", "auto"), ("process", "pytest"), ("docker", "auto"), ("docker", "pytest")]
RUNNER_NAME = {"auto": "plain", "pytest": "pytest"}


def main(path: str) -> None:
    cells: dict = defaultdict(lambda: [0, 0])  # (family, backend, runner) -> [wrong, total]
    wrong_somewhere: dict = defaultdict(set)
    attacks: dict = defaultdict(set)
    kinds: dict = defaultdict(int)
    for case in ET.parse(path).getroot().iter("testcase"):
        match = re.match(r"(\w+)\[(process|docker)-(auto|pytest)-(\w+)\]", case.get("name", ""))
        if not match:
            continue
        family = case.get("classname", "").rsplit(".", 1)[-1].removeprefix("test_")
        backend, runner, name = match.group(2), match.group(3), match.group(4)
        skipped = case.find("skipped")
        failed = case.find("failure") is not None or case.find("error") is not None
        if skipped is not None and "xfail" not in (skipped.get("type", "") + skipped.get("message", "")):
            continue  # skipped (no Docker): not counted
        wrong = skipped is not None or failed
        cell = cells[(family, backend, runner)]
        cell[0] += wrong
        cell[1] += 1
        attacks[family].add(name)
        if wrong:
            wrong_somewhere[family].add(name)
            message = skipped.get("message", "") if skipped is not None else "FAILED"
            kinds[message.split(":")[0].removeprefix("xfail").strip() or message] += 1
    header = "| family | " + " | ".join(f"{b} / {RUNNER_NAME[r]}" for b, r in COLUMNS) + " | attacks wrong somewhere |"
    print(header)
    print("|" + "---|" * (len(COLUMNS) + 2))
    totals = [[0, 0] for _ in COLUMNS]
    for family in sorted(attacks):
        if family == "benign_idioms":
            continue
        row = []
        for i, (backend, runner) in enumerate(COLUMNS):
            wrong, total = cells[(family, backend, runner)]
            totals[i][0] += wrong
            totals[i][1] += total
            row.append(f"{wrong}/{total}")
        print(f"| {family} | " + " | ".join(row) + f" | {len(wrong_somewhere[family])}/{len(attacks[family])} |")
    all_wrong = sum(len(v) for k, v in wrong_somewhere.items() if k != "benign_idioms")
    all_attacks = sum(len(v) for k, v in attacks.items() if k != "benign_idioms")
    print("| **all** | " + " | ".join(f"**{w}/{t}**" for w, t in totals) + f" | **{all_wrong}/{all_attacks}** |")
    benign = [cells[("benign_idioms", b, r)] for b, r in COLUMNS]
    print(f"| benign idioms (must pass; wrong = flagged) | " + " | ".join(f"{w}/{t}" for w, t in benign)
          + f" | {len(wrong_somewhere['benign_idioms'])}/{len(attacks['benign_idioms'])} |")
    print()
    for kind, count in sorted(kinds.items()):
        print(f"- {kind}: {count} cases")


if __name__ == "__main__":
    main(sys.argv[1])
