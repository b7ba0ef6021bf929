"""python -m jepa_world.study STUDY [options]: the studies, by name."""

from __future__ import annotations

import sys

STUDIES = {"label-efficiency": "what V-JEPA pretraining buys a world model trained on few "
                               "action-labelled episodes"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    listed = "; ".join(f"{name}: {what}" for name, what in STUDIES.items())
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m jepa_world.study STUDY [options] (STUDY --help for its "
              f"options)\nstudies: {listed}")
        return 0 if argv else 2
    if argv[0] not in STUDIES:
        print(f"error: unknown study {argv[0]!r} (known: {', '.join(STUDIES)})", file=sys.stderr)
        return 2
    from jepa_world.study import label_efficiency

    return label_efficiency.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
