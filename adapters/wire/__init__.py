"""What the doors share on the way in: request bodies parsed within bounds."""
