"""What every reply sink shares: cutting long answers into messages and pacing the sends."""
