"""The activities domain: pure deciders and folds, no I/O."""
