"""`python -m imagetransformer.export`: runs `imagetransformer.programs.export` (flags: `--helpfull`)."""

if __name__ == "__main__":
    from imagetransformer.programs.export import run_main

    run_main()
