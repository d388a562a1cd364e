"""``python -m aggregator`` behaves exactly like the ``textile-feeds`` command."""

from aggregator.cli import main

if __name__ == "__main__":
    main()
