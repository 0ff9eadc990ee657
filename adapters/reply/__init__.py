"""What every reply sink shares: cutting long answers into messages, pacing the sends, and
keeping the links a model writes safe."""
