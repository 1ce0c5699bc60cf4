"""`python -m imagetransformer.evaluate`: runs `imagetransformer.programs.evaluate` (flags: `--helpfull`)."""

if __name__ == "__main__":
    from imagetransformer.programs.evaluate import run_main

    run_main()
