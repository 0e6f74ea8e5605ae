"""`python -m relay.cli`: how `relay up` starts its children."""
from relay.cli import main

main()
