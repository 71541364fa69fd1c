"""``python -m asbru`` runs the ``asbru`` command line."""
from asbru.cli.entry import main

if __name__ == "__main__":
    main()
