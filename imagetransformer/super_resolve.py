"""`python -m imagetransformer.super_resolve`: runs `imagetransformer.programs.super_resolve` (flags: `--helpfull`)."""

if __name__ == "__main__":
    from imagetransformer.programs.super_resolve import run_main

    run_main()
