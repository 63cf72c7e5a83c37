"""The roster's domain: pure deciders and folds, no I/O (organisation, members, care)."""
