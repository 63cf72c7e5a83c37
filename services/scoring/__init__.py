"""Scoring: the regulation as data and the quantified-assessment projections (量化管理)."""
