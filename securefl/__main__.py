"""``python -m securefl``: the ``securefl`` command, for environments without the console script."""

from securefl.cli import main

main()
