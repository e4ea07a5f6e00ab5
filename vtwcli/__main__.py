"""``python -m vtwcli`` (what ``accelerate launch -m`` and ``torchrun -m`` call)."""

from vtwcli.cli import main

if __name__ == "__main__":
    main()
