"""`python -m imagetransformer.super_resolve`: the program; its code is in `imagetransformer.super_resolve_grid`.

This module only runs as a program. Import `imagetransformer.super_resolve_grid` for the code: importing this
module would rebind the package attribute `imagetransformer.super_resolve`, which is the sampling function.
"""

from absl import app

from imagetransformer import cli
from imagetransformer.super_resolve_grid import main

if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
