"""imaging_db: store microscopy image stacks as 2D PNG frames with searchable metadata."""

__version__ = "0.1.0"
