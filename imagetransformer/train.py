"""`python -m imagetransformer.train`: runs `imagetransformer.programs.train` (flags: `--helpfull`)."""

if __name__ == "__main__":
    from imagetransformer.programs.train import run_main

    run_main()
