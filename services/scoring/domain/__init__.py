"""The scoring domain: the regulation as data and the arithmetic, pure and exact."""
