"""``python -m speech.vc ...`` is ``python -m speech.vc.convert ...``."""

from speech.vc.convert import main

if __name__ == "__main__":
    raise SystemExit(main())
