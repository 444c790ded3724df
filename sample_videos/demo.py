"""Print a few concept searches over the sample videos' index (run by `make demo`).

The queries come from what each sample shot shows (the ``concepts`` lists in the
JSON beside each video), kept to the names the index's model knows, so the demo
stays meaningful whichever model bundle built the index.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vidconcept import Index
from vidconcept.errors import VidconceptError

HERE = Path(__file__).resolve().parent


def shown_concepts() -> list[str]:
    names: list[str] = []
    for path in sorted(HERE.glob("*.json")):
        for concepts in json.loads(path.read_text()).get("concepts", {}).values():
            names += [c.replace(" ", "_") for c in concepts if c.replace(" ", "_") not in names]
    return names


def show(index: Index, query: str, top: int = 3) -> None:
    try:
        results = index.search(query, top=top)
    except VidconceptError as exc:
        print(f"\n$ vidconcept search {query!r}\n  {exc}")
        return
    print(f"\n$ vidconcept search {query!r} --top {top}   ({results.total} matching shots)")
    for r in results:
        top3 = ", ".join(f"{k} {v:.2f}" for k, v in list(r.concepts.items())[:3])
        print(f"  {r.score:5.3f}  {Path(r.video).name:28} shot {r.shot_index} [{r.start_s:5.2f}-{r.end_s:5.2f} s]  {top3}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", default="vidconcept-index")
    args = parser.parse_args()
    with Index(args.index) as index:
        known = {c["name"] for c in index.concepts()}
        present = [c for c in shown_concepts() if c in known]
        for name in present[:4]:
            show(index, name)
        if len(present) >= 2:
            show(index, f"{present[0]} OR {present[1]}", top=4)
            show(index, f"{present[1]} NOT {present[0]}", top=2)
        best = index.search(present[0], top=1) if present else []
        if best:
            hit = best[0]
            sim = index.similar(shot=hit.shot_id, top=3)
            print(f"\n$ vidconcept similar --shot {hit.shot_id} --top 3   (shot {hit.shot_index} of {Path(hit.video).name})")
            for r in sim:
                print(f"  {r.score:5.3f}  {Path(r.video).name:28} shot {r.shot_index} [{r.start_s:5.2f}-{r.end_s:5.2f} s]")


if __name__ == "__main__":
    main()
