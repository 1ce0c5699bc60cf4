"""`python -m imagetransformer.complete`: the program; its code is in `imagetransformer.completions`.

This module only runs as a program. Import `imagetransformer.completions` for the code: importing this module
would rebind the package attribute `imagetransformer.complete`, which is the sampling function.
"""

from absl import app

from imagetransformer import cli
from imagetransformer.completions import main

if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
