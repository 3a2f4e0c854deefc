"""What only regenerates the committed assets (not installed; run from a checkout as
`python -m tools.<name>`, most of it with PyTorch)."""
