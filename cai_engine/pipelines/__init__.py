"""Plain async record -> record functions: revise (critique->revise) and judge (pairwise)."""
