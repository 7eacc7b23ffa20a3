"""`python -m tagger.cli ...` is the `tagger` command."""
from tagger.cli import main

main()
