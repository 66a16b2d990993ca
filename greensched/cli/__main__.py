"""``python -m greensched.cli``."""

from greensched.cli.main import main

main()
