"""The library of pairforge: plain functions over Arrow tables and numpy arrays (see the README's Layout)."""
