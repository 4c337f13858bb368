"""Thin Kedro adapters over the ``lqknn`` library, one package per pipeline."""
