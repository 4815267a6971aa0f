"""Backbone features on disk: extraction (`extract`), the store's format and reader (`store`), and
what its features depend on (`identity`). See tools/extract_features.py."""
