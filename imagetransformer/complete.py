"""`python -m imagetransformer.complete`: runs `imagetransformer.programs.complete` (flags: `--helpfull`)."""

if __name__ == "__main__":
    from imagetransformer.programs.complete import run_main

    run_main()
